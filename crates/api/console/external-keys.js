// The external keys page: the AWS and DNAnexus credentials the platform pulls sample files with,
// one per provider.

import { newRequestId, request } from './api.js';
import {
  announce, dialogActions, field, h, isBusy, openDialog, setBusy, timeElement,
} from './dom.js';
import { rotateExternalKeyButton } from './external-key-rotate.js';
import { testExternalKeyButton } from './external-key-test.js';
import { keyGrid } from './grid.js';
import { awsRoleFields } from './aws-role.js';
import { canManageKeys } from './state.js';
import {
  checkText, durationControl, keysPageHeader, noPermissionPage, readAwsCredential, readAwsRegion,
  readDnanexusToken, showApiError, statusBadge,
} from './keys-shared.js';

const PROVIDERS = { aws: 'Amazon Web Services', dnanexus: 'DNAnexus' };
const AWS_REGIONS = [
  'us-east-1', 'us-east-2', 'us-west-1', 'us-west-2', 'ca-central-1', 'eu-west-1', 'eu-west-2',
  'eu-west-3', 'eu-central-1', 'eu-central-2', 'eu-north-1', 'eu-south-1', 'ap-south-1',
  'ap-southeast-1', 'ap-southeast-2', 'ap-northeast-1', 'ap-northeast-2', 'sa-east-1',
];


/** The providers the user has no active key for: the only ones Create may offer. */
function freeProviders(keys) {
  const taken = new Set(keys.filter((key) => key.status === 'active').map((key) => key.provider));
  return Object.keys(PROVIDERS).filter((provider) => !taken.has(provider));
}

export function externalKeysPage() {
  if (!canManageKeys()) {
    return noPermissionPage();
  }
  const grid = keyGrid({
    id: 'external-keys',
    caption: 'External API keys',
    noun: 'external key',
    itemName: (key) => key.label,
    emptyText: 'You have no external API keys yet. Create one for AWS or DNAnexus to import samples from there. You can have one per provider.',
    // Which providers are free is known only once the list is in: until then Create waits.
    createNeedsList: true,
    columns: [
      { label: 'Label', rowHeader: true, cell: (key) => key.label },
      { label: 'Provider', width: 'col-provider', cell: (key) => providerCell(key) },
      { label: 'Key', width: 'col-hint', cell: (key) => h('code', { class: 'key-hint' }, key.hint) },
      { label: 'Created', width: 'col-time', cell: (key) => timeElement(key.created_at) },
      { label: 'Expires', width: 'col-time', cell: (key) => timeElement(key.expires_at, 'Never') },
      { label: 'Last used', width: 'col-time', cell: (key) => timeElement(key.last_used_at, 'Never') },
      { label: 'Last verified', width: 'col-verified', cell: (key) => verifiedCell(key) },
      { label: 'Status', width: 'col-badge', cell: (key) => statusBadge(key) },
      {
        label: 'Actions',
        width: 'col-actions-rotate',
        cell: (key) => h('div', { class: 'row-actions' }, testExternalKeyButton(grid, key), rotateExternalKeyButton(grid, key, AWS_REGIONS)),
      },
    ],
    load: async () => (await request('GET', '/v1/external-keys')).keys,
    onCreate: (grid) => openCreateExternalKey(grid, freeProviders(grid.items())),
    onDelete: (ids) => request('POST', '/v1/external-keys/delete', { body: { ids } }),
    afterDraw: (drawn) => {
      const free = freeProviders(drawn.items());
      drawn.blockCreate(
        free.length === 0
          ? `You have an active key for each provider (${Object.values(PROVIDERS).join(' and ')}). To store another, delete the one it replaces first.`
          : null,
      );
    },
  });

  function providerCell(key) {
    const name = PROVIDERS[key.provider] ?? key.provider;
    if (!key.region) {
      return name;
    }
    return h('div', { class: 'cell-stack' }, h('span', {}, name), h('span', { class: 'cell-note nowrap' }, key.region));
  }

  // The result of the last test, inside the row: the detail wraps within the column (and is
  // cut to a few lines in the table, with the whole text in its title), it never widens the row.
  function verifiedCell(key) {
    const parts = [];
    if (key.last_verified_at) {
      parts.push(
        h(
          'div',
          { class: 'verified-outcome' },
          key.last_verified_ok
            ? h('span', { class: 'badge badge-active' }, 'OK')
            : h('span', { class: 'badge badge-expired' }, 'Failed'),
          ' ',
          timeElement(key.last_verified_at),
        ),
      );
      if (key.last_verified_detail) {
        parts.push(h('p', { class: 'verified-detail', title: key.last_verified_detail }, key.last_verified_detail));
      }
    } else {
      parts.push(h('span', { class: 'muted' }, 'Never'));
    }
    return h('div', { class: 'verified' }, parts);
  }

  grid.reload();
  return h(
    'section',
    { class: 'page' },
    keysPageHeader('external'),
    h(
      'p',
      { class: 'help' },
      'The platform uses these credentials to pull sample files. You can have one external key per provider; ',
      'secrets are stored encrypted and never shown again. Test checks what an import needs against the provider; ',
      'Rotate replaces a key\u2019s secret in place, without stopping running imports.',
    ),
    grid.element,
  );
}

/**
 * The create dialog offers only `free` providers (those without an active key), so a second
 * key for a provider is refused before its secret is typed. If another tab stored one in the
 * meantime the API still refuses (409) and the list is read again.
 */
function openCreateExternalKey(grid, free) {
  const requestId = newRequestId();
  const formError = h('div', { class: 'notice notice-error', role: 'alert', hidden: true, id: 'external-create-error' });
  const label = field({
    label: 'Label',
    input: h('input', {
      id: 'external-label', name: 'label', type: 'text', autocomplete: 'off', placeholder: 'genomics bucket',
    }),
  });
  const provider = field({
    label: 'Provider',
    input: h(
      'select',
      { id: 'external-provider', name: 'provider' },
      // With one provider left it is chosen already; with two, the user picks.
      free.length > 1 ? h('option', { value: '' }, 'Select a provider') : null,
      free.map((value) => h('option', { value }, PROVIDERS[value])),
    ),
    hint: free.length === 1
      ? `You already have a key for ${PROVIDERS[Object.keys(PROVIDERS).find((p) => p !== free[0])]}: one key per provider.`
      : null,
  });
  const accessKey = field({
    label: 'Access key ID',
    input: h('input', {
      id: 'aws-access-key-id', name: 'access_key_id', type: 'text', autocomplete: 'off',
      autocapitalize: 'characters', spellcheck: 'false', placeholder: 'AKIA…',
    }),
  });
  const secret = field({
    label: 'Secret access key',
    input: h('input', {
      id: 'aws-secret-access-key', name: 'secret_access_key', type: 'password', autocomplete: 'off', spellcheck: 'false',
    }),
  });
  const regions = h('datalist', { id: 'aws-regions' }, AWS_REGIONS.map((region) => h('option', { value: region })));
  const region = field({
    label: 'Region',
    input: h('input', {
      id: 'aws-region', name: 'region', type: 'text', autocomplete: 'off', spellcheck: 'false',
      list: 'aws-regions', placeholder: 'eu-west-2',
    }),
  });
  // Temporary credentials (AWS SSO, `aws sts get-session-token`) carry a session token and end
  // with it; the fields show only for that kind, so a long-lived key's form is unchanged.
  const kind = field({
    label: 'Credential type',
    input: h(
      'select',
      { id: 'aws-kind', name: 'kind' },
      h('option', { value: 'access_key' }, 'Access key (AKIA\u2026)'),
      h('option', { value: 'session' }, 'Temporary credentials (ASIA\u2026 with a session token)'),
      h('option', { value: 'role' }, 'IAM role (keyledger assumes it with your external ID)'),
    ),
  });
  // A role has no access key: its ARN replaces the key fields, and the external ID and trust
  // policy are shown before it is saved.
  const role = awsRoleFields();
  const sessionToken = field({
    label: 'Session token',
    input: h('input', {
      id: 'aws-session-token', name: 'session_token', type: 'password', autocomplete: 'off', spellcheck: 'false',
    }),
  });
  const sessionExpiresAt = field({
    label: 'Token expires at',
    hint: 'As AWS printed it, e.g. 2026-12-05T21:30:00Z. The key expires then at the latest.',
    input: h('input', {
      id: 'aws-session-expires-at', name: 'session_expires_at', type: 'text', autocomplete: 'off',
      spellcheck: 'false', placeholder: '2026-12-05T21:30:00Z',
    }),
  });
  const sessionFields = h('div', { hidden: true }, sessionToken.wrapper, sessionExpiresAt.wrapper);
  kind.input.addEventListener('change', () => {
    sessionFields.hidden = kind.input.value !== 'session';
    const isRole = kind.input.value === 'role';
    role.wrapper.hidden = !isRole;
    accessKey.wrapper.hidden = isRole;
    secret.wrapper.hidden = isRole;
    if (isRole) {
      role.load();
    }
  });
  const token = field({
    label: 'API token',
    input: h('input', { id: 'dnanexus-token', name: 'token', type: 'password', autocomplete: 'off', spellcheck: 'false' }),
  });
  // One duration control, moved into the group of the provider chosen, after its own fields.
  const duration = durationControl('external', { hint: null });
  const awsDurationSlot = h('div', { class: 'slot' });
  const dnanexusDurationSlot = h('div', { class: 'slot' });
  const awsGroup = h(
    'fieldset',
    { class: 'provider-fields', hidden: true },
    h('legend', {}, PROVIDERS.aws),
    accessKey.wrapper,
    secret.wrapper,
    h('div', { class: 'field-row' }, region.wrapper, awsDurationSlot),
    regions,
    kind.wrapper,
    sessionFields,
    role.wrapper,
  );
  const dnanexusGroup = h(
    'fieldset',
    { class: 'provider-fields', hidden: true },
    h('legend', {}, PROVIDERS.dnanexus),
    token.wrapper,
    dnanexusDurationSlot,
  );
  const actions = dialogActions('Cancel', 'Submit');
  const form = h(
    'form',
    { class: 'form', novalidate: true },
    formError,
    h('div', { class: 'field-row' }, label.wrapper, provider.wrapper),
    awsGroup,
    dnanexusGroup,
    actions.element,
  );
  const showProvider = () => {
    const chosen = provider.input.value;
    awsGroup.hidden = chosen !== 'aws';
    dnanexusGroup.hidden = chosen !== 'dnanexus';
    (chosen === 'dnanexus' ? dnanexusDurationSlot : awsDurationSlot).append(duration.wrapper);
  };
  showProvider();
  provider.input.addEventListener('change', () => {
    provider.clearError();
    formError.hidden = true;
    showProvider();
  });
  const dialog = openDialog({
    title: 'Create external API key',
    description: 'Fill in the label and select the provider. You can have one key per provider; its secret is stored encrypted and never shown again.',
    content: form,
    size: 'wide',
    returnFocus: () => grid.createButton,
  });
  actions.cancel.addEventListener('click', () => dialog.close());

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (isBusy(actions.submit)) {
      return;
    }
    formError.hidden = true;
    for (const each of [label, provider, accessKey, secret, region, kind, sessionToken, sessionExpiresAt, token, role.roleArn]) {
      each.clearError();
    }
    duration.clearErrors();
    const invalid = [];
    const check = (target, problem) => {
      if (problem) {
        target.showError(problem);
        invalid.push(target.input);
      }
    };
    const labelValue = label.input.value.trim();
    check(label, checkText(labelValue, 'label'));
    const chosen = provider.input.value;
    check(provider, chosen ? null : `Select a provider: ${free.map((value) => PROVIDERS[value]).join(' or ')}.`);
    const body = { label: labelValue, provider: chosen };
    if (chosen === 'aws' && kind.input.value === 'role') {
      const regionValue = readAwsRegion(region, check);
      body.kind = 'role';
      body.aws_role = { ...role.read(check), region: regionValue };
    } else if (chosen === 'aws') {
      const fields = { accessKey, secret, region, sessionToken, sessionExpiresAt };
      body.aws = readAwsCredential(fields, kind.input.value === 'session', check);
      body.kind = kind.input.value;
    } else if (chosen === 'dnanexus') {
      body.dnanexus = { token: readDnanexusToken(token, check) };
    }
    if (chosen) {
      const picked = duration.read();
      if (picked.error) {
        invalid.push(picked.error);
      } else {
        body.duration = picked.value;
      }
    }
    if (invalid.length > 0) {
      invalid[0].focus();
      return;
    }
    setBusy(actions.submit, true, 'Saving…');
    let created;
    try {
      created = await request('POST', '/v1/external-keys', { body, requestId });
    } catch (error) {
      setBusy(actions.submit, false);
      if (error.code === 'external_key_exists') {
        // The list was out of date: read it again, so Create and the providers are right.
        grid.reload();
      }
      const show = (target) => (message) => (target.showError(message), target.input);
      showApiError(
        error,
        {
          label: show(label),
          provider: show(provider),
          access_key_id: show(accessKey),
          secret_access_key: show(secret),
          region: show(region),
          kind: show(kind),
          // With kind `access_key` the token field is hidden: an ASIA… id's refusal goes on the kind.
          session_token: (message) => show(kind.input.value === 'session' ? sessionToken : kind)(message),
          session_expires_at: show(sessionExpiresAt),
          token: show(token),
          role_arn: show(role.roleArn),
          aws_role: show(role.roleArn),
          duration: (message) => duration.showError(message),
        },
        formError,
        actions.submit,
      );
      return;
    }
    dialog.close();
    const done = `Stored the ${PROVIDERS[created.provider] ?? created.provider} key \u201c${created.label}\u201d.`;
    grid.notices.show('success', done);
    announce(done);
    await grid.reload();
  });
}
