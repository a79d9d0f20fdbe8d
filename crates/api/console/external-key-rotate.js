// The Rotate dialog of an external key: a new secret for the same key, in place
// (`PUT /v1/external-keys/{id}/credential`). The key keeps its id, label and expiry; imports
// started from now on use the new secret, running ones finish on the old one, whose data key is
// then destroyed. AWS: access key ID, secret, region (it may change: a rotated key can live in
// another region) and, for temporary credentials, the session token and its expiry; DNAnexus:
// the token. The fields are checked as when storing a key, and the API's refusal goes under the
// field it names.

import { request } from './api.js';
import { announce, dialogActions, field, h, icon, isBusy, openDialog, setBusy } from './dom.js';
import { readAwsCredential, readDnanexusToken, showApiError } from './keys-shared.js';

/** The kinds of credential this dialog can replace: a secret the user holds. */
const ROTATABLE = new Set(['access_key', 'session', 'token']);

/**
 * The Rotate button of a row: opens the dialog for `key`; `regions` are offered for AWS. A kind
 * with no secret of the user's to replace (or one this dialog does not know) gets no button.
 */
export function rotateExternalKeyButton(grid, key, regions) {
  if (!ROTATABLE.has(key.kind)) {
    return null;
  }
  const button = h(
    'button',
    {
      type: 'button', class: 'button button-small', 'data-action': 'rotate', 'aria-label': `Rotate ${key.label}`,
      disabled: key.status !== 'active',
    },
    icon('roll'),
    'Rotate',
  );
  button.addEventListener('click', () => openRotateExternalKey(grid, key, regions));
  return button;
}

function openRotateExternalKey(grid, key, regions) {
  const aws = key.provider === 'aws';
  const formError = h('div', { class: 'notice notice-error', role: 'alert', hidden: true, id: 'external-rotate-error' });
  const input = (id, name, type, extra = {}) => h('input', {
    id, name, type, autocomplete: 'off', spellcheck: 'false', ...extra,
  });
  const kind = field({
    label: 'Credential type',
    input: h(
      'select',
      { id: 'rotate-kind', name: 'kind' },
      h('option', { value: 'access_key', selected: key.kind !== 'session' }, 'Access key (AKIA\u2026)'),
      h('option', { value: 'session', selected: key.kind === 'session' }, 'Temporary credentials (ASIA\u2026 with a session token)'),
    ),
  });
  const accessKey = field({
    label: 'Access key ID',
    input: input('rotate-access-key-id', 'access_key_id', 'text', { autocapitalize: 'characters', placeholder: 'AKIA\u2026' }),
  });
  const secret = field({ label: 'Secret access key', input: input('rotate-secret-access-key', 'secret_access_key', 'password') });
  const region = field({
    label: 'Region',
    hint: 'The region of the buckets this key reads. It may differ from the old one.',
    input: input('rotate-region', 'region', 'text', { list: 'rotate-regions', value: key.region ?? '', placeholder: 'eu-west-2' }),
  });
  const regionList = h('datalist', { id: 'rotate-regions' }, regions.map((value) => h('option', { value })));
  const sessionToken = field({ label: 'Session token', input: input('rotate-session-token', 'session_token', 'password') });
  const sessionExpiresAt = field({
    label: 'Token expires at',
    hint: 'As AWS printed it, e.g. 2026-12-05T21:30:00Z. The key expires then at the latest.',
    input: input('rotate-session-expires-at', 'session_expires_at', 'text', { placeholder: '2026-12-05T21:30:00Z' }),
  });
  const sessionFields = h('div', { class: 'form', hidden: key.kind !== 'session' }, sessionToken.wrapper, sessionExpiresAt.wrapper);
  kind.input.addEventListener('change', () => {
    sessionFields.hidden = kind.input.value !== 'session';
  });
  const token = field({ label: 'New API token', input: input('rotate-dnanexus-token', 'token', 'password') });
  const fields = aws
    ? [kind.wrapper, accessKey.wrapper, secret.wrapper, region.wrapper, regionList, sessionFields]
    : [token.wrapper];
  const actions = dialogActions('Cancel', 'Replace secret');
  const form = h('form', { class: 'form', novalidate: true }, formError, ...fields, actions.element);
  const dialog = openDialog({
    title: `Rotate \u201c${key.label}\u201d`,
    description: `The key keeps its id (${key.id}), label and expiry; only its secret changes. Imports started from now on use the new secret; running ones finish on the old one, which is then destroyed.`,
    content: form,
    size: 'wide',
    returnFocus: () => grid.createButton,
  });
  actions.cancel.addEventListener('click', () => dialog.close());
  const all = [kind, accessKey, secret, region, sessionToken, sessionExpiresAt, token];
  // A refusal stays under its field until the field is changed.
  for (const each of all) {
    each.input.addEventListener('input', () => each.clearError());
  }

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (isBusy(actions.submit)) {
      return;
    }
    formError.hidden = true;
    for (const each of all) {
      each.clearError();
    }
    const invalid = [];
    const check = (target, problem) => {
      if (problem) {
        target.showError(problem);
        invalid.push(target.input);
      }
    };
    let body;
    if (aws) {
      const fields = { accessKey, secret, region, sessionToken, sessionExpiresAt };
      body = { aws: readAwsCredential(fields, kind.input.value === 'session', check) };
    } else {
      body = { dnanexus: { token: readDnanexusToken(token, check) } };
    }
    if (invalid.length > 0) {
      invalid[0].focus();
      return;
    }
    setBusy(actions.submit, true, 'Replacing\u2026');
    let rotated;
    try {
      rotated = await request('PUT', `/v1/external-keys/${encodeURIComponent(key.id)}/credential`, { body });
    } catch (error) {
      setBusy(actions.submit, false);
      const show = (target) => (message) => (target.showError(message), target.input);
      showApiError(
        error,
        {
          kind: show(kind),
          access_key_id: show(accessKey),
          secret_access_key: show(secret),
          region: show(region),
          // With kind `access_key` the token field is hidden: an ASIA… id's refusal goes on the kind.
          session_token: (message) => show(kind.input.value === 'session' ? sessionToken : kind)(message),
          session_expires_at: show(sessionExpiresAt),
          token: show(token),
        },
        formError,
        actions.submit,
      );
      return;
    }
    dialog.close();
    grid.replace(rotated);
    const where = rotated.region ? ` in ${rotated.region}` : '';
    const done = `Replaced the secret of \u201c${rotated.label}\u201d: imports started from now on use ${rotated.hint}${where}; running ones finish on the old secret, which is then destroyed.`;
    grid.notices.show('success', done);
    announce(done);
    grid.focusIn(rotated.id, '[data-action="rotate"]');
  });
}
