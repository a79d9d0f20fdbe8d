// What a new internal key may do beyond "everything its owner may": scopes (some of the owner's
// permissions), client networks, or none at all (a honeytoken, which grants nothing and whose
// every use is recorded). The create dialog's "Limits" section and the list's notes.

import { field, h } from './dom.js';
import { app } from './state.js';

/** Words for the permissions a user can hold, in the order the API lists them. */
const PERMISSION_LABELS = {
  manage_user_api_keys: 'Manage API keys',
  import_organization_samples: 'Import samples',
  manage_organization_users: 'Manage users and roles',
  view_audit_log: 'View the audit log',
  verify_api_keys: 'Verify keys for other services',
  audit_organization_keys: 'See every key of the organisation',
  revoke_organization_keys: 'Revoke anyone\u2019s key',
  run_ingestion_jobs: 'Run ingestion jobs (workers)',
};

export function permissionLabel(permission) {
  return PERMISSION_LABELS[permission] ?? permission;
}

/**
 * The "Limits" section of the create dialog, folded away: nothing chosen, the key may do
 * everything its owner may, from anywhere. `read()` gives the fields of the API's body.
 */
export function keyLimitsControl() {
  const held = Array.isArray(app.me?.permissions) ? app.me.permissions : [];
  const boxes = held.map((permission) => {
    const input = h('input', { type: 'checkbox', name: 'scopes', value: permission });
    return { permission, input, label: h('label', { class: 'check' }, input, permissionLabel(permission)) };
  });
  const scopesError = h('p', { class: 'field-error', id: 'key-scopes-error', hidden: true });
  const scopes = h(
    'fieldset',
    { class: 'provider-fields', id: 'key-scopes', 'aria-describedby': 'key-scopes-hint' },
    h('legend', {}, 'Scopes'),
    h('p', { class: 'field-hint', id: 'key-scopes-hint' }, 'Tick none for all of your permissions, now and later. Ticked, the key may only do these, and never more than you may.'),
    h('div', { class: 'check-list' }, boxes.map((box) => box.label)),
    scopesError,
  );
  const networks = field({
    label: 'Client networks',
    input: h('textarea', { id: 'key-networks', name: 'networks', rows: 2, autocomplete: 'off', spellcheck: 'false' }),
    hint: 'Addresses or CIDR ranges the key works from, one per line, such as 203.0.113.0/24. Empty: anywhere.',
  });
  const honeytoken = h('input', { type: 'checkbox', id: 'key-honeytoken', name: 'honeytoken' });
  const honeytokenField = h(
    'div',
    { class: 'check-field' },
    h('label', { class: 'check' }, honeytoken, 'Honeytoken'),
    h('p', { class: 'field-hint' }, 'A decoy to plant where a leak would show: it grants nothing, and every use is recorded with the caller\u2019s address.'),
  );
  honeytoken.addEventListener('change', () => {
    scopes.disabled = honeytoken.checked;
    networks.input.disabled = honeytoken.checked;
  });
  const wrapper = h(
    'details',
    { class: 'key-limits' },
    h('summary', {}, 'Limits (optional)'),
    scopes,
    networks.wrapper,
    honeytokenField,
  );
  return {
    wrapper,
    clearErrors() {
      scopesError.hidden = true;
      networks.clearError();
    },
    /** Shows the API's error for `scopes` or `networks`, opening the section; the input to focus. */
    showError(fieldName, message) {
      wrapper.open = true;
      if (fieldName === 'networks') {
        networks.showError(message);
        return networks.input;
      }
      scopesError.textContent = message;
      scopesError.hidden = false;
      return boxes[0]?.input ?? null;
    },
    /** `{honeytoken}` or `{scopes?, networks?}`: only what was chosen. */
    read() {
      if (honeytoken.checked) {
        return { honeytoken: true };
      }
      const body = {};
      const chosen = boxes.filter((box) => box.input.checked).map((box) => box.permission);
      if (chosen.length > 0) {
        body.scopes = chosen;
      }
      const listed = networks.input.value.split(/[\s,]+/).filter(Boolean);
      if (listed.length > 0) {
        body.networks = listed;
      }
      return body;
    },
  };
}

/** A note under a key's name in the list: honeytoken, or what it is limited to. */
export function keyLimitsNote(key) {
  if (key.honeytoken) {
    return h('span', { class: 'badge badge-warning' }, 'Honeytoken');
  }
  const parts = [];
  if (Array.isArray(key.scopes)) {
    parts.push(`only: ${key.scopes.map(permissionLabel).join(', ')}`);
  }
  if (Array.isArray(key.networks) && key.networks.length > 0) {
    parts.push(`from ${key.networks.join(', ')}`);
  }
  return parts.length > 0 ? h('span', { class: 'cell-note' }, parts.join('; ')) : null;
}
