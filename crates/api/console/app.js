// The keyledger web console: sign-in, the avatar menu, internal and external API keys, profile
// and billing. It uses only the public REST API (api.js) on this page's own origin.

import { newRequestId, onUnauthorized, request, session, signIn } from './api.js';
import {
  announce, dialogActions, field, formatTime, h, icon, isBusy, openDialog, setBusy, timeElement,
} from './dom.js';
import { keyGrid, shortId } from './grid.js';

const MANAGE_KEYS = 'manage_user_api_keys';
const PROVIDERS = { aws: 'Amazon Web Services', dnanexus: 'DNAnexus' };
const DURATIONS = [
  ['1d', '1 day'],
  ['7d', '7 days'],
  ['30d', '30 days'],
  ['60d', '60 days'],
  ['90d', '90 days'],
  ['1y', '1 year'],
  ['never', 'Never'],
  ['custom', 'Custom number of days'],
];
const DEFAULT_DURATION = '30d';
const EXPIRING_SOON_MS = 7 * 24 * 60 * 60 * 1000;
const AWS_REGIONS = [
  'us-east-1', 'us-east-2', 'us-west-1', 'us-west-2', 'ca-central-1', 'eu-west-1', 'eu-west-2',
  'eu-west-3', 'eu-central-1', 'eu-central-2', 'eu-north-1', 'eu-south-1', 'ap-south-1',
  'ap-southeast-1', 'ap-southeast-2', 'ap-northeast-1', 'ap-northeast-2', 'sa-east-1',
];

const app = {
  /** The answer of GET /v1/me for the signed-in user. */
  me: null,
  /** Keys created on this page, in clear text, by id: memory only, forgotten on leaving. */
  freshKeys: new Map(),
  /** Runs when the current page is left. */
  leave: null,
  expiryTimer: null,
};

const main = document.getElementById('main');

const ROUTES = {
  '/api-keys': internalKeysPage,
  '/api-keys/internal': internalKeysPage,
  '/api-keys/external': externalKeysPage,
  '/profile': profilePage,
  '/billing': billingPage,
};

boot();

async function boot() {
  setUpAvatarMenu();
  onUnauthorized((error) => {
    const message = error.code === 'session_ended'
      ? error.message
      : `You were signed out: ${error.message}`;
    signOut(message);
  });
  window.addEventListener('hashchange', () => {
    if (location.hash === '' || location.hash.startsWith('#/')) {
      render();
    }
  });
  // The skip link moves focus without touching the route in the URL.
  document.querySelector('.skip-link').addEventListener('click', (event) => {
    event.preventDefault();
    main.focus();
  });
  if (!session.current()) {
    showSignIn();
    return;
  }
  try {
    app.me = await request('GET', '/v1/me');
  } catch (error) {
    if (error.status !== 401) {
      showSignIn(error.message);
    }
    return;
  }
  startSession();
  render({ moveFocus: false });
}

// ---------------------------------------------------------------------------------------------
// Session, routing and the page frame.

function startSession() {
  const account = document.getElementById('account');
  account.hidden = false;
  const who = app.me.display_name || app.me.user;
  document.getElementById('avatar-initials').textContent = initials(who);
  document.getElementById('avatar-label').textContent = `Account menu for ${who}`;
  document.getElementById('menu-user').textContent = `Signed in as ${who}`;
  clearTimeout(app.expiryTimer);
  const current = session.current();
  if (current) {
    const remaining = Date.parse(current.expires_at) - Date.now();
    app.expiryTimer = setTimeout(
      () => signOut('Your session has ended. Sign in again.'),
      Math.max(0, Math.min(remaining, 2 ** 31 - 1)),
    );
  }
}

function signOut(message) {
  session.clear();
  clearTimeout(app.expiryTimer);
  app.me = null;
  app.freshKeys.clear();
  app.leave = null;
  for (const dialog of document.querySelectorAll('dialog')) {
    dialog.remove();
  }
  showSignIn(message);
}

// The route in the URL's hash. A malformed escape (`#%E0%A4%A`) makes decodeURIComponent throw
// a URIError; such a hash names no page, so the default view is shown rather than a blank one.
function currentPath() {
  let path = '';
  try {
    path = decodeURIComponent(location.hash.replace(/^#/, ''));
  } catch (error) {
    if (!(error instanceof URIError)) {
      throw error;
    }
  }
  return path || '/api-keys';
}

function render({ moveFocus = true } = {}) {
  if (!app.me || !session.current()) {
    showSignIn();
    return;
  }
  closeAvatarMenu(false);
  if (app.leave) {
    const leave = app.leave;
    app.leave = null;
    leave();
  }
  const page = ROUTES[currentPath()] ?? notFoundPage;
  main.replaceChildren(page());
  const heading = main.querySelector('h1');
  document.title = heading ? `${heading.textContent} · keyledger` : 'keyledger';
  if (moveFocus && heading) {
    heading.focus();
  }
}

function pageHeading(text) {
  return h('h1', { tabindex: '-1' }, text);
}

function notFoundPage() {
  return h(
    'section',
    { class: 'page' },
    pageHeading('Page not found'),
    h('p', {}, 'There is no such page. ', h('a', { href: '#/api-keys' }, 'Go to your API keys'), '.'),
  );
}

function initials(name) {
  const parts = name.split(/[\s._-]+/).filter(Boolean);
  const letters = parts.length > 1 ? parts[0][0] + parts[1][0] : name.slice(0, 2);
  return letters.toUpperCase();
}

// ---------------------------------------------------------------------------------------------
// Sign-in.

function showSignIn(message) {
  closeAvatarMenu(false);
  document.getElementById('account').hidden = true;
  document.title = 'Sign in · keyledger';
  const keyInput = h('input', {
    id: 'sign-in-key',
    name: 'key',
    type: 'password',
    autocomplete: 'off',
    autocapitalize: 'off',
    spellcheck: 'false',
    required: true,
  });
  const keyField = field({
    label: 'Internal API key',
    input: keyInput,
    hint: 'Starts with kl_. It is exchanged for a session token and is not stored in this browser.',
  });
  const formError = h('div', { class: 'notice notice-error', role: 'alert', hidden: true });
  const submit = h('button', { type: 'submit', class: 'button button-primary' }, 'Sign in');
  const form = h(
    'form',
    // POST, so that even without this script a key could never end up in a URL.
    { class: 'form sign-in-form', method: 'post', action: '/', novalidate: true },
    formError,
    keyField.wrapper,
    h('div', { class: 'form-actions' }, submit),
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (isBusy(submit)) {
      return;
    }
    keyField.clearError();
    formError.hidden = true;
    const key = keyInput.value.trim();
    const problem = checkInternalKey(key);
    if (problem) {
      keyField.showError(problem);
      keyInput.focus();
      return;
    }
    setBusy(submit, true, 'Signing in…');
    try {
      await signIn(key);
      keyInput.value = '';
      app.me = await request('GET', '/v1/me');
    } catch (error) {
      setBusy(submit, false);
      session.clear();
      if (error.field === 'key') {
        keyField.showError(error.message);
      } else {
        formError.textContent = error.message;
        formError.hidden = false;
      }
      keyInput.focus();
      return;
    }
    startSession();
    render();
    announce(`Signed in as ${app.me.display_name || app.me.user}.`);
  });
  main.replaceChildren(
    h(
      'section',
      { class: 'page page-narrow sign-in' },
      h('h1', { tabindex: '-1' }, 'Sign in to keyledger'),
      message ? h('p', { class: 'notice notice-info', role: 'status', id: 'sign-in-message' }, message) : null,
      h(
        'p',
        { class: 'lead' },
        'Sign in with one of your internal API keys. The first administrator\u2019s key is printed by ',
        h('code', {}, 'keyledger serve'),
        ' when it starts on an empty data directory.',
      ),
      form,
    ),
  );
  keyInput.focus();
}

function checkInternalKey(key) {
  if (!key) {
    return 'Enter your internal API key.';
  }
  if (key.startsWith('kls_')) {
    return 'This is a session token: sign in with an internal API key (kl_…) instead.';
  }
  if (!/^kl_[A-Za-z0-9]{38}$/.test(key)) {
    return 'An internal API key is kl_ followed by 38 letters and digits. Check that it was copied whole.';
  }
  return null;
}

// ---------------------------------------------------------------------------------------------
// The avatar menu (top right): API Keys, Profile, Billing, Sign out.

function setUpAvatarMenu() {
  const button = document.getElementById('avatar-button');
  const menu = document.getElementById('avatar-menu');
  const items = () => Array.from(menu.querySelectorAll('[role="menuitem"]'));
  const open = (which) => {
    menu.hidden = false;
    button.setAttribute('aria-expanded', 'true');
    const list = items();
    (which === 'last' ? list[list.length - 1] : list[0]).focus();
  };
  button.addEventListener('click', () => {
    if (menu.hidden) {
      open('first');
    } else {
      closeAvatarMenu(true);
    }
  });
  button.addEventListener('keydown', (event) => {
    if (event.key === 'ArrowDown') {
      event.preventDefault();
      open('first');
    } else if (event.key === 'ArrowUp') {
      event.preventDefault();
      open('last');
    }
  });
  menu.addEventListener('keydown', (event) => {
    const list = items();
    const index = list.indexOf(document.activeElement);
    const move = (to) => {
      event.preventDefault();
      list[(to + list.length) % list.length].focus();
    };
    switch (event.key) {
      case 'ArrowDown':
        move(index + 1);
        break;
      case 'ArrowUp':
        move(index - 1);
        break;
      case 'Home':
        move(0);
        break;
      case 'End':
        move(list.length - 1);
        break;
      case 'Escape':
        event.preventDefault();
        closeAvatarMenu(true);
        break;
      case 'Tab':
        closeAvatarMenu(false);
        break;
      case ' ':
        if (document.activeElement instanceof HTMLAnchorElement) {
          event.preventDefault();
          document.activeElement.click();
        }
        break;
      default:
        break;
    }
  });
  menu.addEventListener('click', (event) => {
    const item = event.target.closest('[role="menuitem"]');
    if (!item) {
      return;
    }
    closeAvatarMenu(false);
    // A menu item for the page already shown still takes the user to its top.
    if (item instanceof HTMLAnchorElement && item.getAttribute('href') === location.hash) {
      render();
    }
  });
  document.getElementById('sign-out').addEventListener('click', () => {
    signOut('You have signed out.');
  });
  document.addEventListener('click', (event) => {
    if (!menu.hidden && !document.getElementById('account').contains(event.target)) {
      closeAvatarMenu(false);
    }
  });
}

function closeAvatarMenu(returnFocus) {
  const menu = document.getElementById('avatar-menu');
  const button = document.getElementById('avatar-button');
  if (menu.hidden) {
    return;
  }
  menu.hidden = true;
  button.setAttribute('aria-expanded', 'false');
  if (returnFocus) {
    button.focus();
  }
}

// ---------------------------------------------------------------------------------------------
// Shared pieces of the two key pages.

function canManageKeys() {
  return Array.isArray(app.me?.permissions) && app.me.permissions.includes(MANAGE_KEYS);
}

function keysPageHeader(active) {
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

function noPermissionPage() {
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

function checkText(value, what) {
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
function durationControl(prefix, { hint = 'The key stops working after this. It cannot be changed later.' } = {}) {
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
function showApiError(error, fields, formError, fallbackFocus) {
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
function expiresSoon(item) {
  if (item.status !== 'active' || !item.expires_at) {
    return false;
  }
  // The second half of the key's life too, so that a 7-day key is not flagged from its first day.
  const expires = Date.parse(item.expires_at);
  const created = Date.parse(item.created_at);
  const left = expires - Date.now();
  return !Number.isNaN(left) && left < EXPIRING_SOON_MS && left < (expires - created) / 2;
}

function statusBadge(item) {
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

function timeValue(iso, missing) {
  const value = iso ? Date.parse(iso) : NaN;
  return Number.isNaN(value) ? missing : value;
}

const nameCollator = new Intl.Collator(undefined, { sensitivity: 'base', numeric: true });

// ---------------------------------------------------------------------------------------------
// Internal keys.

const INTERNAL_SORTS = [
  { key: 'created', direction: 'descending', label: 'Created, newest first' },
  { key: 'created', direction: 'ascending', label: 'Created, oldest first' },
  { key: 'name', direction: 'ascending', label: 'Name, A to Z' },
  { key: 'name', direction: 'descending', label: 'Name, Z to A' },
  { key: 'expires', direction: 'ascending', label: 'Expires, soonest first' },
  { key: 'expires', direction: 'descending', label: 'Expires, latest first' },
  { key: 'last_used', direction: 'descending', label: 'Last used, most recent first' },
  { key: 'last_used', direction: 'ascending', label: 'Last used, least recent first' },
];

function internalKeysPage() {
  if (!canManageKeys()) {
    return noPermissionPage();
  }
  // Clear-text keys are forgotten as soon as the user leaves this page.
  app.leave = () => app.freshKeys.clear();
  const grid = keyGrid({
    id: 'internal-keys',
    caption: 'Internal API keys',
    noun: 'key',
    itemName: (key) => key.name,
    emptyText: 'You have no internal API keys yet. Create one to use the REST API or the keyledger CLI.',
    columns: [
      {
        label: 'Name',
        rowHeader: true,
        cell: (key) => key.name,
        sort: { key: 'name', value: (key) => key.name, compare: nameCollator.compare },
      },
      { label: 'ID', width: 'col-id', cell: (key) => idCell(key) },
      { label: 'Key', width: 'col-key', cell: (key) => keyCell(key) },
      {
        label: 'Created',
        width: 'col-time',
        cell: (key) => timeElement(key.created_at),
        sort: { key: 'created', value: (key) => timeValue(key.created_at, 0), firstDirection: 'descending' },
      },
      {
        label: 'Expires',
        width: 'col-time',
        cell: (key) => timeElement(key.expires_at, 'Never'),
        sort: { key: 'expires', value: (key) => timeValue(key.expires_at, Infinity) },
      },
      {
        label: 'Last used',
        width: 'col-time',
        cell: (key) => timeElement(key.last_used_at, 'Never'),
        sort: { key: 'last_used', value: (key) => timeValue(key.last_used_at, -Infinity), firstDirection: 'descending' },
      },
      { label: 'Status', width: 'col-status', cell: (key) => internalStatus(key) },
      { label: 'Actions', width: 'col-actions', cell: (key) => rollButton(key) },
    ],
    view: {
      search: { label: 'Search by name', text: (key) => key.name },
      filter: {
        label: 'Status',
        options: [
          { value: 'all', label: 'All statuses' },
          { value: 'active', label: 'Active', test: (key) => key.status === 'active' },
          { value: 'soon', label: 'Expires soon', test: (key) => expiresSoon(key) },
          { value: 'expired', label: 'Expired', test: (key) => key.status === 'expired' },
        ],
      },
      sorts: INTERNAL_SORTS,
      initial: { key: 'created', direction: 'descending' },
    },
    load: async () => (await request('GET', '/v1/api-keys')).keys,
    onCreate: (grid) => openCreateApiKey(grid),
    afterDraw: (drawn) => showFreshKeyNotice(drawn),
    onDelete: async (ids) => {
      await request('POST', '/v1/api-keys/delete', { body: { ids } });
      for (const id of ids) {
        app.freshKeys.delete(id);
      }
    },
  });

  function idCell(key) {
    const value = h('code', { class: 'key-id', title: key.id }, shortId(key.id));
    const copy = h(
      'button',
      { type: 'button', class: 'icon-button copy-button', 'aria-label': `Copy the id of ${key.name}`, title: 'Copy id' },
      icon('copy'),
    );
    copy.addEventListener('click', () => copyText(key.id, value, copy, 'id'));
    return h('div', { class: 'copyable' }, value, copy);
  }

  function keyCell(key) {
    const secret = app.freshKeys.get(key.id);
    if (!secret) {
      return h('code', { class: 'key-hint' }, key.hint);
    }
    const value = h('code', { class: 'secret-value', 'data-secret': true }, secret);
    const copy = h(
      'button',
      { type: 'button', class: 'icon-button copy-button', 'aria-label': `Copy key ${key.name}`, title: 'Copy key' },
      icon('copy'),
    );
    copy.addEventListener('click', () => copyText(secret, value, copy, 'key'));
    return h('div', { class: 'secret' }, value, copy);
  }

  function internalStatus(key) {
    const until = timeValue(key.previous_valid_until, 0);
    if (key.status !== 'active' || until <= Date.now()) {
      return statusBadge(key);
    }
    return h(
      'div',
      { class: 'status-stack' },
      statusBadge(key),
      h('span', { class: 'status-note' }, 'Old secret works until ', timeElement(key.previous_valid_until)),
    );
  }

  function rollButton(key) {
    if (key.status !== 'active') {
      return h('span', { class: 'muted' }, '\u2014');
    }
    const button = h(
      'button',
      { type: 'button', class: 'button button-small', 'data-action': 'roll', 'aria-label': `Roll ${key.name}` },
      icon('roll'),
      'Roll',
    );
    button.addEventListener('click', () => openRollApiKey(grid, key));
    return button;
  }

  function showFreshKeyNotice(shown) {
    const present = shown.items().filter((key) => app.freshKeys.has(key.id));
    if (present.length === 0) {
      if (shown.notices.element.querySelector('#fresh-key-notice')) {
        shown.notices.clear();
      }
      return;
    }
    const forget = h('button', { type: 'button', class: 'button button-small' }, 'I have copied it');
    forget.addEventListener('click', () => {
      app.freshKeys.clear();
      shown.draw();
      shown.createButton.focus();
      announce('The new key is hidden now; only its hint is shown.');
    });
    const notice = shown.notices.show(
      'warning',
      h('strong', {}, present.length > 1 ? 'Copy your new keys now.' : 'Copy your new key now.'),
      ' It is shown here in clear text only once: after you leave or refresh this page, only its hint is shown.',
      present.some((key) => !shown.visible().includes(key)) ? ' The search or filter hides it now: show all keys to see it.' : null,
      ' ',
      forget,
    );
    notice.id = 'fresh-key-notice';
  }

  grid.reload();
  return h('section', { class: 'page' }, keysPageHeader('internal'), grid.element);
}

/** Copies `text` (a key or an id); without a clipboard, selects it so that Ctrl+C copies it. */
async function copyText(text, valueElement, button, what) {
  let copied = false;
  try {
    await navigator.clipboard.writeText(text);
    copied = true;
  } catch {
    // No clipboard API (a page served over plain HTTP from another host): select the text so
    // that Ctrl+C copies it.
    const range = document.createRange();
    range.selectNodeContents(valueElement);
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }
  const Label = what === 'id' ? 'Id' : 'Key';
  const message = copied
    ? `${Label} copied to the clipboard.`
    : `The ${what} is selected: press Ctrl+C (or \u2318C) to copy it.`;
  button.classList.toggle('copied', copied);
  button.setAttribute('title', copied ? 'Copied' : `Copy ${what}`);
  button.replaceChildren(icon(copied ? 'check' : 'copy'));
  announce(message);
}

function openCreateApiKey(grid) {
  const requestId = newRequestId();
  const formError = h('div', { class: 'notice notice-error', role: 'alert', hidden: true });
  const name = field({
    label: 'Name',
    input: h('input', { id: 'key-name', name: 'name', type: 'text', autocomplete: 'off', spellcheck: 'false' }),
    hint: 'What the key is for, such as \u201claptop\u201d or \u201cCI pipeline\u201d. Up to 64 characters.',
  });
  const duration = durationControl('key');
  const actions = dialogActions('Cancel', 'Submit');
  const form = h('form', { class: 'form', novalidate: true }, formError, name.wrapper, duration.wrapper, actions.element);
  const dialog = openDialog({
    title: 'Create API key',
    description: 'The key is shown once, right after you submit. Copy it then.',
    content: form,
    returnFocus: () => grid.createButton,
  });
  actions.cancel.addEventListener('click', () => dialog.close());
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (isBusy(actions.submit)) {
      return;
    }
    formError.hidden = true;
    name.clearError();
    duration.clearErrors();
    const invalid = [];
    const nameValue = name.input.value.trim();
    const nameProblem = checkText(nameValue, 'name');
    if (nameProblem) {
      name.showError(nameProblem);
      invalid.push(name.input);
    }
    const chosen = duration.read();
    if (chosen.error) {
      invalid.push(chosen.error);
    }
    if (invalid.length > 0) {
      invalid[0].focus();
      return;
    }
    setBusy(actions.submit, true, 'Creating…');
    let created;
    try {
      created = await request('POST', '/v1/api-keys', {
        body: { name: nameValue, duration: chosen.value },
        requestId,
      });
    } catch (error) {
      setBusy(actions.submit, false);
      showApiError(
        error,
        {
          name: (message) => (name.showError(message), name.input),
          duration: (message) => duration.showError(message),
        },
        formError,
        actions.submit,
      );
      return;
    }
    app.freshKeys.set(created.id, created.key);
    dialog.close();
    announce(`Created the key \u201c${created.name}\u201d. Copy it now: it is shown only once.`);
    await grid.reload();
  });
}


const GRACE_PERIODS = [
  ['0', 'None: the current secret stops working at once'],
  ['15m', '15 minutes'],
  ['1h', '1 hour'],
  ['24h', '24 hours'],
  ['7d', '7 days'],
];
const DEFAULT_GRACE = '1h';

/**
 * Rolls an internal key (`POST /v1/api-keys/{id}/roll`): a new secret under the same id, shown
 * once in the grid like a new key; the current secret keeps working for the chosen grace.
 * Rolling the key this session was signed in with ends the session when the old secret stops
 * working, so the console signs in again with the new secret before it makes any other call.
 */
function openRollApiKey(grid, key) {
  const formError = h('div', { class: 'notice notice-error', role: 'alert', hidden: true });
  const grace = field({
    label: 'Grace period',
    input: h(
      'select',
      { id: 'roll-grace', name: 'grace' },
      GRACE_PERIODS.map(([value, label]) => h('option', { value, selected: value === DEFAULT_GRACE }, label)),
    ),
    hint: 'How long the current secret keeps working, so you can update what uses it. Use None for a leaked key.',
  });
  const signedInWithIt = key.id === app.me?.key_id;
  const ownKeyNote = signedInWithIt
    ? h(
      'p',
      { class: 'notice notice-info', id: 'roll-own-key' },
      'You are signed in with this key. The console signs in again with the new secret, so you stay signed in.',
    )
    : null;
  const actions = dialogActions('Cancel', 'Roll key');
  const form = h('form', { class: 'form', novalidate: true }, formError, ownKeyNote, grace.wrapper, actions.element);
  const dialog = openDialog({
    title: `Roll key \u201c${key.name}\u201d?`,
    description: `The key keeps its id (${key.id}) and gets a new secret, shown once after you roll it. Copy it then.`,
    content: form,
    returnFocus: () => grid.createButton,
  });
  actions.cancel.addEventListener('click', () => dialog.close());
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (isBusy(actions.submit)) {
      return;
    }
    formError.hidden = true;
    grace.clearError();
    setBusy(actions.submit, true, 'Rolling\u2026');
    let rolled;
    try {
      rolled = await request('POST', `/v1/api-keys/${encodeURIComponent(key.id)}/roll`, {
        body: { grace: grace.input.value },
      });
    } catch (error) {
      setBusy(actions.submit, false);
      showApiError(error, { grace: (message) => (grace.showError(message), grace.input) }, formError, actions.submit);
      return;
    }
    app.freshKeys.set(rolled.id, rolled.key);
    if (signedInWithIt) {
      try {
        await signIn(rolled.key);
        app.me = await request('GET', '/v1/me');
        startSession();
      } catch (error) {
        // The new secret is the only way back in: show it here rather than lose it.
        setBusy(actions.submit, false);
        showSecretInDialog(form, rolled, error);
        return;
      }
    }
    dialog.close();
    const until = rolled.previous_valid_until ? ` The old secret works until ${formatTime(rolled.previous_valid_until)}.` : '';
    announce(`Rolled the key \u201c${rolled.name}\u201d. Copy the new secret now: it is shown only once.${until}`);
    await grid.reload();
    // The row was drawn again: focus its new secret's copy button rather than losing focus.
    grid.focusIn(rolled.id, '.secret .copy-button');
  });
}

function showSecretInDialog(form, rolled, error) {
  const value = h('code', { class: 'secret-value', 'data-secret': true }, rolled.key);
  const copy = h(
    'button',
    { type: 'button', class: 'icon-button copy-button', 'aria-label': `Copy key ${rolled.name}`, title: 'Copy key' },
    icon('copy'),
  );
  copy.addEventListener('click', () => copyText(rolled.key, value, copy, 'key'));
  form.replaceChildren(
    h(
      'div',
      { class: 'notice notice-warning', role: 'alert' },
      h('strong', {}, 'The key was rolled, but signing in with the new secret failed: '),
      error.message,
      ' Copy the new secret now, then sign in with it.',
    ),
    h('div', { class: 'secret' }, value, copy),
  );
  copy.focus();
}

// ---------------------------------------------------------------------------------------------
// External keys.

/** The providers the user has no active key for: the only ones Create may offer. */
function freeProviders(keys) {
  const taken = new Set(keys.filter((key) => key.status === 'active').map((key) => key.provider));
  return Object.keys(PROVIDERS).filter((provider) => !taken.has(provider));
}

function externalKeysPage() {
  if (!canManageKeys()) {
    return noPermissionPage();
  }
  // A Test that the API refused (not a test result: those are in the key), by key id.
  const testErrors = new Map();
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
      { label: 'Actions', width: 'col-actions', cell: (key) => testButton(key) },
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
    const refused = testErrors.get(key.id);
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
    } else if (!refused) {
      parts.push(h('span', { class: 'muted' }, 'Never'));
    }
    if (refused) {
      parts.push(h('p', { class: 'verified-detail verified-error', title: refused }, `Could not test: ${refused}`));
    }
    return h('div', { class: 'verified' }, parts);
  }

  function testButton(key) {
    const button = h(
      'button',
      { type: 'button', class: 'button button-small', 'data-action': 'test', 'aria-label': `Test ${key.label}` },
      icon('plug'),
      'Test',
    );
    button.addEventListener('click', async () => {
      if (isBusy(button)) {
        return;
      }
      setBusy(button, true, 'Testing\u2026');
      let tested;
      try {
        tested = await request('POST', `/v1/external-keys/${encodeURIComponent(key.id)}/verify`);
      } catch (error) {
        testErrors.set(key.id, error.message);
        grid.draw();
        announce(`Could not test \u201c${key.label}\u201d: ${error.message}`);
        grid.focusIn(key.id, '[data-action="test"]');
        return;
      }
      testErrors.delete(key.id);
      grid.replace(tested);
      const provider = PROVIDERS[key.provider] ?? key.provider;
      announce(
        tested.last_verified_ok
          ? `Tested \u201c${key.label}\u201d: ${provider} accepted it.`
          : `Tested \u201c${key.label}\u201d: it did not work${tested.last_verified_detail ? `: ${tested.last_verified_detail}` : '.'}`,
      );
      grid.focusIn(key.id, '[data-action="test"]');
    });
    return button;
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
      'secrets are stored encrypted and never shown again. Test checks a key against its provider.',
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
    for (const each of [label, provider, accessKey, secret, region, token]) {
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
    if (chosen === 'aws') {
      const id = accessKey.input.value.trim();
      const secretValue = secret.input.value.trim();
      const regionValue = region.input.value.trim();
      check(accessKey, /^(AKIA|ASIA)[A-Z0-9]{16}$/.test(id)
        ? null
        : 'An AWS access key ID is AKIA or ASIA followed by 16 uppercase letters or digits.');
      check(secret, /^[A-Za-z0-9/+=]{40}$/.test(secretValue)
        ? null
        : 'An AWS secret access key is 40 characters: letters, digits, /, + or =.');
      check(region, /^[a-z]{2,}(-[a-z]+)?-[a-z]+-\d{1,2}$/.test(regionValue)
        ? null
        : 'Enter an AWS region such as us-east-1 or eu-west-2.');
      body.aws = { access_key_id: id, secret_access_key: secretValue, region: regionValue };
    } else if (chosen === 'dnanexus') {
      const tokenValue = token.input.value.trim();
      check(token, /^[A-Za-z0-9._-]{16,256}$/.test(tokenValue)
        ? null
        : 'A DNAnexus token is 16 to 256 letters, digits, -, _ or . characters.');
      body.dnanexus = { token: tokenValue };
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
          token: show(token),
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

// ---------------------------------------------------------------------------------------------
// Profile and billing.

function externalKeysLinks() {
  return h(
    'section',
    { class: 'panel' },
    h('h2', {}, 'API keys'),
    h(
      'ul',
      { class: 'link-list' },
      h('li', {}, h('a', { href: '#/api-keys/internal' }, 'Internal API keys'), ' \u2014 for the REST API and the CLI'),
      h('li', {}, h('a', { href: '#/api-keys/external' }, 'External API keys'), ' \u2014 AWS and DNAnexus credentials for sample imports'),
    ),
  );
}

function profilePage() {
  const me = app.me;
  const current = session.current();
  const row = (term, ...details) => [h('dt', {}, term), h('dd', {}, ...details)];
  const chips = (values) =>
    values.length
      ? h('ul', { class: 'chips' }, values.map((value) => h('li', {}, h('code', {}, value))))
      : h('span', { class: 'muted' }, 'none');
  return h(
    'section',
    { class: 'page' },
    pageHeading('Profile'),
    h(
      'section',
      { class: 'panel' },
      h('h2', {}, 'You'),
      h(
        'dl',
        { class: 'details' },
        row('User', h('code', {}, me.user)),
        row('Display name', me.display_name ?? h('span', { class: 'muted' }, 'not set')),
        row('Roles', chips(me.roles ?? [])),
        row('Permissions', chips(me.permissions ?? [])),
        row('Signed in with key', h('code', {}, me.key_id)),
        row('Session ends', timeElement(current?.expires_at)),
      ),
    ),
    externalKeysLinks(),
  );
}

function billingPage() {
  return h(
    'section',
    { class: 'page' },
    pageHeading('Billing'),
    h(
      'section',
      { class: 'panel' },
      h('h2', {}, 'Plans and invoices'),
      h('p', {}, 'keyledger keeps no billing information: plans, usage and invoices are managed by the platform.'),
    ),
    h(
      'section',
      { class: 'panel' },
      h('h2', {}, 'Storage credentials'),
      h(
        'p',
        {},
        'Sample imports from AWS S3 and DNAnexus use your external API keys. ',
        h('a', { href: '#/api-keys/external' }, 'Manage your external API keys'),
        '.',
      ),
    ),
  );
}
