// The `role` kind of AWS key in the create form: the role's ARN, and a panel with the user's
// external ID and the trust policy their role needs (from GET /v1/external-keys/aws-role-setup),
// each with a copy button. Nothing here is secret.

import { request } from './api.js';
import { copyButton, field, h } from './dom.js';

/**
 * The role fields of the create form. `load()` fetches the setup once (when the kind `role` is
 * first chosen); `read(check)` validates and returns the `aws_role` object of the request.
 */
export function awsRoleFields() {
  const roleArn = field({
    label: 'Role ARN',
    hint: 'The IAM role keyledger assumes for each ingestion, e.g. arn:aws:iam::111122223333:role/lab-reader.',
    input: h('input', {
      id: 'aws-role-arn', name: 'role_arn', type: 'text', autocomplete: 'off', spellcheck: 'false',
      placeholder: 'arn:aws:iam::111122223333:role/lab-reader',
    }),
  });
  const externalId = h('code', { id: 'aws-external-id', class: 'secret-value' }, 'loading\u2026');
  const policy = h('pre', { id: 'aws-trust-policy', class: 'trust-policy' }, '');
  const principalNote = h('p', { class: 'field-hint' });
  const panel = h(
    'div',
    { class: 'notice notice-info role-setup', id: 'aws-role-setup' },
    h('p', {}, 'Before you save, give your role this trust policy: it lets the platform assume the role only with your external ID.'),
    h('div', { class: 'copyable' }, h('span', {}, 'External ID: '), externalId, copyButton('external ID', () => externalId.textContent, externalId)),
    principalNote,
    h('div', { class: 'copyable' }, policy, copyButton('trust policy', () => policy.textContent, policy)),
  );
  let loaded = null;
  return {
    roleArn,
    wrapper: h('div', { hidden: true }, roleArn.wrapper, panel),
    load() {
      if (loaded) {
        return loaded;
      }
      loaded = request('GET', '/v1/external-keys/aws-role-setup').then(
        (setup) => {
          externalId.textContent = setup.external_id;
          policy.textContent = JSON.stringify(setup.trust_policy, null, 2);
          principalNote.textContent = setup.principal_arn
            ? `The platform assumes roles as ${setup.principal_arn}.`
            : 'This server does not name the principal that assumes roles: ask your keyledger operator for it.';
        },
        (error) => {
          loaded = null;
          externalId.textContent = 'unavailable';
          principalNote.textContent = `The external ID could not be read: ${error.message}`;
        },
      );
      return loaded;
    },
    read(check) {
      const value = roleArn.input.value.trim();
      check(roleArn, /^arn:aws(-cn|-us-gov)?:iam::\d{12}:role\/[\w+=,.@/-]+$/.test(value)
        ? null
        : 'Enter the role\u2019s ARN, such as arn:aws:iam::111122223333:role/lab-reader.');
      return { role_arn: value };
    },
  };
}
