// What the internal and external key pages share: their header, the create dialogs' checks and
// duration choice, API errors in dialogs, and status badges.

import { field, h } from './dom.js';
import { app, MANAGE_KEYS, pageHeading } from './state.js';

export const DURATIONS = [
  ['1d', '1 day'],
  ['7d', '7 days'],
  ['30d', '30 days'],
  ['60d', '60 days'],
  ['90d', '90 days'],
  ['1y', '1 year'],
  ['never', 'Never'],
  ['custom', 'Custom number of days'],
];
export const DEFAULT_DURATION = '30d';
export const EXPIRING_SOON_MS = 7 * 24 * 60 * 60 * 1000;

export function keysPageHeader(active) {
  const tab = (id, label, href) =>
    h(
      'li',
      {},
      h(
        'a',
        {
          href,
          class: id === active ? 'tab tab-active' : 'tab',
          'aria-current': id === active ? 'page' : null,
        },
        label,
      ),
    );
  return [
    pageHeading('API Keys'),
    h(
      'p',
      { class: 'lead' },
      'Internal API keys let you use the REST API and the keyledger CLI. External API keys let the platform pull sample files from AWS and DNAnexus.',
    ),
    h(
      'nav',
      { class: 'tabs', 'aria-label': 'API key types' },
      h('ul', {}, tab('internal', 'Internal', '#/api-keys/internal'), tab('external', 'External', '#/api-keys/external')),
    ),
  ];
}

export function noPermissionPage() {
  const roles = app.me.roles?.length ? app.me.roles.join(', ') : 'none';
  return h(
    'section',
    { class: 'page' },
    pageHeading('API Keys'),
    h(
      'div',
      { class: 'notice notice-info panel', id: 'no-permission' },
      h('h2', {}, 'You cannot manage API keys'),
      h(
        'p',
        {},
        'Creating, listing and deleting API keys needs the Manage API Keys permission (',
        h('code', {}, MANAGE_KEYS),
        `), and your roles (${roles}) do not include it.`,
      ),
      h(
        'p',
        {},
        'Roles are granted by a user with the Manage Users permission (',
        h('code', {}, 'manage_organization_users'),
        '), such as an admin: ask them for a role that includes it, such as member, then reload this page. Your ',
        h('a', { href: '#/profile' }, 'profile'),
        ' shows your roles and permissions.',
      ),
    ),
  );
}

export function checkText(value, what) {
  if (!value) {
    return `Enter a ${what}.`;
  }
  if ([...value].length > 64) {
    return `Use at most 64 characters (this ${what} has ${[...value].length}).`;
  }
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f-\u009f]/.test(value)) {
    return 'Remove control characters such as tabs and line breaks.';
  }
  return null;
}

/** The duration choice of both create dialogs: presets, never, or a custom number of days. */
export function durationControl(prefix, { hint = 'The key stops working after this. It cannot be changed later.' } = {}) {
  const select = h(
    'select',
    { id: `${prefix}-duration`, name: 'duration' },
    DURATIONS.map(([value, label]) => h('option', { value, selected: value === DEFAULT_DURATION }, label)),
  );
  const days = h('input', {
    id: `${prefix}-days`,
    name: 'days',
    type: 'text',
    inputmode: 'numeric',
    autocomplete: 'off',
  });
  const durationField = field({
    label: 'Duration',
    input: select,
    hint,
  });
  const daysField = field({ label: 'Number of days', input: days });
  daysField.wrapper.hidden = true;
  select.addEventListener('change', () => {
    daysField.wrapper.hidden = select.value !== 'custom';
    daysField.clearError();
  });
  return {
    wrapper: h('div', { class: 'duration' }, durationField.wrapper, daysField.wrapper),
    clearErrors() {
      durationField.clearError();
      daysField.clearError();
    },
    /** `{value}` for the API, or `{error: input}` after showing what is wrong. */
    read() {
      if (select.value !== 'custom') {
        return { value: select.value };
      }
      const raw = days.value.trim();
      if (!/^\d{1,9}$/.test(raw) || Number(raw) < 1) {
        daysField.showError('Enter a whole number of days, 1 or more.');
        return { error: days };
      }
      return { value: `${Number(raw)}d` };
    },
    /** Shows an error the API reported for `duration`; returns the input to focus. */
    showError(message) {
      if (select.value === 'custom') {
        daysField.showError(message);
        return days;
      }
      durationField.showError(message);
      return select;
    },
  };
}

/**
 * Shows an API error in a dialog: under the field it names when the dialog has that field,
 * otherwise in the dialog's error notice. Focuses what needs attention.
 */
export function showApiError(error, fields, formError, fallbackFocus) {
  const target = error.field ? fields[error.field] : null;
  if (target) {
    const input = target(error.message);
    if (input) {
      input.focus();
      return;
    }
  }
  formError.textContent = error.message;
  formError.hidden = false;
  fallbackFocus?.focus();
}


/** Active, but within a week of expiry and in the second half of its life. */
export function expiresSoon(item) {
  if (item.status !== 'active' || !item.expires_at) {
    return false;
  }
  // The second half of the key's life too, so that a 7-day key is not flagged from its first day.
  const expires = Date.parse(item.expires_at);
  const created = Date.parse(item.created_at);
  const left = expires - Date.now();
  return !Number.isNaN(left) && left < EXPIRING_SOON_MS && left < (expires - created) / 2;
}

export function statusBadge(item) {
  if (item.status === 'expired') {
    return h('span', { class: 'badge badge-expired' }, 'Expired');
  }
  if (item.status !== 'active') {
    return h('span', { class: 'badge' }, item.status);
  }
  if (expiresSoon(item)) {
    return h('span', { class: 'badge badge-warning' }, 'Expires soon');
  }
  return h('span', { class: 'badge badge-active' }, 'Active');
}

export function timeValue(iso, missing) {
  const value = iso ? Date.parse(iso) : NaN;
  return Number.isNaN(value) ? missing : value;
}

export const nameCollator = new Intl.Collator(undefined, { sensitivity: 'base', numeric: true });

/** Reads an AWS region field, checked as the API checks it; a problem goes to `check`. */
export function readAwsRegion(region, check) {
  const value = region.input.value.trim();
  check(region, /^[a-z]{2,}(-[a-z]+)?-[a-z]+-\d{1,2}$/.test(value)
    ? null
    : 'Enter an AWS region such as us-east-1 or eu-west-2.');
  return value;
}

/**
 * Reads an AWS access key (id, secret, region) and, for temporary credentials (`session`), its
 * token and expiry: the `aws` object of a create or rotate body. Problems go to `check`, field by
 * field in the form's order.
 */
export function readAwsCredential(fields, session, check) {
  const { accessKey, secret, region, sessionToken, sessionExpiresAt } = fields;
  const id = accessKey.input.value.trim();
  const secretValue = secret.input.value.trim();
  check(accessKey, /^(AKIA|ASIA)[A-Z0-9]{16}$/.test(id)
    ? null
    : 'An AWS access key ID is AKIA or ASIA followed by 16 uppercase letters or digits.');
  check(secret, /^[A-Za-z0-9/+=]{40}$/.test(secretValue)
    ? null
    : 'An AWS secret access key is 40 characters: letters, digits, /, + or =.');
  const aws = { access_key_id: id, secret_access_key: secretValue, region: readAwsRegion(region, check) };
  if (session) {
    const tokenValue = sessionToken.input.value.trim();
    const expiresValue = sessionExpiresAt.input.value.trim();
    check(sessionToken, /^[A-Za-z0-9/+=]+$/.test(tokenValue)
      ? null
      : 'Paste the session token that came with the ASIA\u2026 access key ID.');
    check(sessionExpiresAt, Number.isNaN(Date.parse(expiresValue))
      ? 'Enter when the token expires, such as 2026-12-05T21:30:00Z.'
      : null);
    aws.session_token = tokenValue;
    aws.session_expires_at = expiresValue;
  }
  return aws;
}

/** Reads a DNAnexus token field, checked as the API checks it. */
export function readDnanexusToken(token, check) {
  const value = token.input.value.trim();
  check(token, /^[A-Za-z0-9._-]{16,256}$/.test(value)
    ? null
    : 'A DNAnexus token is 16 to 256 letters, digits, -, _ or . characters.');
  return value;
}
