// The Test dialog of an external key: what an import needs, checked one capability at a time
// (`POST /v1/external-keys/{id}/verify`). AWS: a bucket and prefix (list, read, region), or
// nothing (the key itself: the AWS identity); DNAnexus: a project (the token's user and its
// access level), or nothing (the user). Each capability is shown as passed or refused, with the
// provider's words; the row's *Last verified* shows the recorded outcome.

import { request } from './api.js';
import { announce, dialogActions, field, h, icon, isBusy, openDialog, setBusy } from './dom.js';
import { showApiError } from './keys-shared.js';

/** How each capability of the answer is named for people. */
const CAPABILITIES = {
  identity: 'Identity',
  list: 'List',
  read: 'Read',
  region: 'Region',
  user: 'User',
  project: 'Access level',
};

/** The Test button of a row: opens the dialog for `key`. */
export function testExternalKeyButton(grid, key) {
  const button = h(
    'button',
    { type: 'button', class: 'button button-small', 'data-action': 'test', 'aria-label': `Test ${key.label}` },
    icon('plug'),
    'Test',
  );
  button.addEventListener('click', () => openTestExternalKey(grid, key));
  return button;
}

function openTestExternalKey(grid, key) {
  const aws = key.provider === 'aws';
  const formError = h('div', { class: 'notice notice-error', role: 'alert', hidden: true, id: 'external-test-error' });
  const bucket = field({
    label: 'Bucket',
    input: h('input', { id: 'test-bucket', name: 'bucket', type: 'text', autocomplete: 'off', spellcheck: 'false', placeholder: 'lab' }),
  });
  const prefix = field({
    label: 'Prefix',
    input: h('input', { id: 'test-prefix', name: 'prefix', type: 'text', autocomplete: 'off', spellcheck: 'false', placeholder: 'runs/' }),
  });
  const project = field({
    label: 'Project',
    hint: 'Its id (project-\u2026) or its exact name.',
    input: h('input', { id: 'test-project', name: 'project', type: 'text', autocomplete: 'off', spellcheck: 'false', placeholder: 'rnaseq' }),
  });
  const scope = aws ? h('div', { class: 'field-row' }, bucket.wrapper, prefix.wrapper) : project.wrapper;
  const results = h('section', { class: 'test-results', 'aria-live': 'polite', id: 'external-test-results', hidden: true });
  const actions = dialogActions('Close', 'Run test');
  const form = h('form', { class: 'form', novalidate: true }, formError, scope, results, actions.element);
  const dialog = openDialog({
    title: `Test \u201c${key.label}\u201d`,
    description: aws
      ? 'Checks what an import of a bucket and prefix needs: list under the prefix, read its first object\u2019s first byte, and the bucket\u2019s region. Without a bucket it checks the key itself (who AWS says it is). Nothing is changed at AWS.'
      : 'Checks whose token this is and, with a project, the token\u2019s access level on it (View is enough to import). Nothing is changed at DNAnexus.',
    content: form,
    size: 'wide',
    // A test redraws the row, so the button that opened the dialog is gone: its successor.
    returnFocus: () => document.querySelector(`tr[data-id="${CSS.escape(key.id)}"] [data-action="test"]`),
  });
  actions.cancel.addEventListener('click', () => dialog.close());

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (isBusy(actions.submit)) {
      return;
    }
    formError.hidden = true;
    for (const each of [bucket, prefix, project]) {
      each.clearError();
    }
    const body = {};
    if (aws) {
      const bucketValue = bucket.input.value.trim();
      const prefixValue = prefix.input.value.trim();
      if (prefixValue && !bucketValue) {
        bucket.showError('Enter the bucket the prefix is in, or clear the prefix to test the key itself.');
        bucket.input.focus();
        return;
      }
      if (bucketValue) {
        body.bucket = bucketValue;
        body.prefix = prefixValue;
      }
    } else if (project.input.value.trim()) {
      body.project = project.input.value.trim();
    }
    setBusy(actions.submit, true, 'Testing\u2026');
    let tested;
    try {
      tested = await request('POST', `/v1/external-keys/${encodeURIComponent(key.id)}/verify`, { body });
    } catch (error) {
      setBusy(actions.submit, false);
      const show = (target) => (message) => (target.showError(message), target.input);
      showApiError(error, { bucket: show(bucket), prefix: show(prefix), project: show(project) }, formError, actions.submit);
      return;
    }
    setBusy(actions.submit, false);
    grid.replace(tested);
    showResults(results, tested, body);
    announce(summary(tested, body));
  });
}

/** What was tested, in the words of the dialog's result heading. */
function subject(tested, body) {
  if (body.bucket) {
    return `an import of s3://${body.bucket}/${body.prefix ?? ''}`;
  }
  if (body.project) {
    return `an import from ${body.project}`;
  }
  return tested.provider === 'aws' ? 'the key itself' : 'the token itself';
}

function summary(tested, body) {
  return tested.last_verified_ok
    ? `Passed: the key can do everything ${subject(tested, body)} needs.`
    : `Failed: the key cannot do everything ${subject(tested, body)} needs.`;
}

function showResults(results, tested, body) {
  const rows = tested.capabilities.map((checked) => h(
    'li',
    { class: 'capability', 'data-capability': checked.capability },
    h('span', { class: checked.ok ? 'badge badge-active' : 'badge badge-expired' }, checked.ok ? 'Passed' : 'Refused'),
    h('strong', { class: 'capability-name' }, CAPABILITIES[checked.capability] ?? checked.capability),
    h('span', { class: 'capability-detail' }, checked.detail),
  ));
  results.replaceChildren(
    h('h3', { class: 'test-summary' }, summary(tested, body)),
    rows.length > 0
      ? h('ul', { class: 'capabilities', 'aria-label': 'Capabilities checked' }, rows)
      // No capability could be checked (the endpoint cannot be reached, say): the reason.
      : h('p', { class: 'capability-detail' }, tested.last_verified_detail ?? ''),
  );
  results.hidden = false;
}
