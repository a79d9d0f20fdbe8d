// The internal keys page: list, create (shown once), roll and delete API keys of the signed-in user.

import { newRequestId, request, session, signIn } from './api.js';
import {
  announce, dialogActions, field, formatTime, h, icon, isBusy, openDialog, setBusy, timeElement,
} from './dom.js';
import { keyGrid, shortId } from './grid.js';
import { keyLimitsControl, keyLimitsNote } from './key-limits.js';
import { app, canManageKeys } from './state.js';
import {
  checkText, durationControl, expiresSoon, keysPageHeader, nameCollator, noPermissionPage, showApiError, statusBadge, timeValue,
} from './keys-shared.js';


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

export function internalKeysPage() {
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
        cell: (key) => nameCell(key),
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

  function nameCell(key) {
    const note = keyLimitsNote(key);
    return note ? h('span', { class: 'cell-stack' }, key.name, note) : key.name;
  }

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
  const limits = keyLimitsControl();
  const actions = dialogActions('Cancel', 'Submit');
  const form = h(
    'form',
    { class: 'form', novalidate: true },
    formError, name.wrapper, duration.wrapper, limits.wrapper, actions.element,
  );
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
    limits.clearErrors();
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
        body: { name: nameValue, duration: chosen.value, ...limits.read() },
        requestId,
      });
    } catch (error) {
      setBusy(actions.submit, false);
      showApiError(
        error,
        {
          name: (message) => (name.showError(message), name.input),
          duration: (message) => duration.showError(message),
          scopes: (message) => limits.showError('scopes', message),
          networks: (message) => limits.showError('networks', message),
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
        app.startSession();
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
