// The keyledger web console: sign-in, the avatar menu, internal and external API keys, the
// Samples pages, profile and billing. It uses only the public REST API (api.js) on this page's own origin.

import { onUnauthorized, request, session, signIn } from './api.js';
import { announce, field, h, isBusy, setBusy, timeElement } from './dom.js';
import { app, canImportSamples, pageHeading } from './state.js';
import { internalKeysPage } from './internal-keys.js';
import { externalKeysPage } from './external-keys.js';
import { clearExpiryBanner, refreshExpiryBanner } from './expiry-banner.js';
import { canAuditKeys, inventoryPage } from './inventory.js';
import { importPage } from './samples-import.js';
import { jobsPage } from './samples-jobs.js';
import { jobPage } from './samples-job.js';
import { sourcesPage } from './samples-sources.js';

const main = document.getElementById('main');

const ROUTES = {
  '/api-keys': internalKeysPage,
  '/api-keys/internal': internalKeysPage,
  '/api-keys/external': externalKeysPage,
  '/profile': profilePage,
  '/billing': billingPage,
  '/admin/keys': inventoryPage,
  '/samples': jobsPage,
  '/samples/import': importPage,
  '/samples/jobs': jobsPage,
  '/samples/sources': sourcesPage,
};
const JOB_ROUTE = '/samples/jobs/';

boot();

async function boot() {
  app.startSession = startSession;
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
  refreshExpiryBanner();
  document.getElementById('menu-inventory').hidden = !canAuditKeys();
  document.getElementById('menu-samples').hidden = !canImportSamples();
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
  clearExpiryBanner();
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
  const path = currentPath();
  const page = ROUTES[path] ?? (path.startsWith(JOB_ROUTE) ? () => jobPage(path.slice(JOB_ROUTE.length)) : notFoundPage);
  main.replaceChildren(page());
  const heading = main.querySelector('h1');
  document.title = heading ? `${heading.textContent} · keyledger` : 'keyledger';
  if (moveFocus && heading) {
    heading.focus();
  }
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
  const items = () => Array.from(menu.querySelectorAll('[role="menuitem"]')).filter((item) => !item.closest('[hidden]'));
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
