// The key inventory (decision 0026): every internal and external key of the organisation, for
// holders of `audit_organization_keys`, with filters, a sort and "Show more" (the API's cursor
// pages). Holders of `revoke_organization_keys` revoke any key from here, with a reason.
//
// Nothing the API returns becomes markup: cells are built with `h` (text nodes only).

import { request } from './api.js';
import { announce, dialogActions, field, h, isBusy, noticeArea, openDialog, setBusy, timeElement } from './dom.js';
import { app, pageHeading } from './state.js';
import { plainTable, shortId } from './grid.js';

export const AUDIT_KEYS = 'audit_organization_keys';
export const REVOKE_KEYS = 'revoke_organization_keys';
const PAGE_SIZE = 50;

export function canAuditKeys() {
  return Array.isArray(app.me?.permissions) && app.me.permissions.includes(AUDIT_KEYS);
}

function canRevokeKeys() {
  return Array.isArray(app.me?.permissions) && app.me.permissions.includes(REVOKE_KEYS);
}

export function inventoryPage() {
  if (!canAuditKeys()) {
    return h(
      'section',
      { class: 'page' },
      pageHeading('Key inventory'),
      h(
        'p',
        { class: 'notice notice-info' },
        'The key inventory needs the permission ',
        h('code', {}, AUDIT_KEYS),
        ', which your roles do not grant. An administrator can grant it.',
      ),
    );
  }
  const notices = noticeArea();
  const select = (id, label, options) => {
    const input = h(
      'select',
      { id },
      options.map(([value, text]) => h('option', { value }, text)),
    );
    return { input, element: h('div', { class: 'view-field' }, h('label', { for: id }, label), input) };
  };
  const owner = h('input', { id: 'inventory-owner', type: 'search', autocomplete: 'off', spellcheck: 'false' });
  const ownerField = h('div', { class: 'view-field' }, h('label', { for: 'inventory-owner' }, 'Owner'), owner);
  const status = select('inventory-status', 'Status', [
    ['', 'Any status'],
    ['active', 'Active'],
    ['expired', 'Expired'],
    ['revoked', 'Revoked'],
    ['deleted', 'Deleted by owner'],
  ]);
  const provider = select('inventory-provider', 'Kind', [
    ['', 'Every kind'],
    ['internal', 'Internal (kl_)'],
    ['aws', 'AWS'],
    ['dnanexus', 'DNAnexus'],
  ]);
  const expiring = select('inventory-expiring', 'Expiring', [
    ['', 'Any time'],
    ['1', 'Within a day'],
    ['7', 'Within 7 days'],
    ['30', 'Within 30 days'],
  ]);
  const sort = select('inventory-sort', 'Sort by', [
    ['-created', 'Newest first'],
    ['created', 'Oldest first'],
    ['expires', 'Expiring first'],
    ['-last_used', 'Recently used'],
    ['owner', 'Owner'],
    ['name', 'Name'],
  ]);
  const filters = h(
    'form',
    { class: 'grid-view', role: 'search', 'aria-label': 'Filter the inventory' },
    ownerField,
    status.element,
    provider.element,
    expiring.element,
    sort.element,
  );
  const summary = h('p', { class: 'toolbar-status', 'aria-live': 'polite', id: 'inventory-summary' });
  const more = h('button', { type: 'button', class: 'button', hidden: true }, 'Show more');
  const columns = [
    ['Name', 'col-name'],
    ['Owner', 'col-hint'],
    ['Kind', 'col-badge'],
    ['Key', 'col-key'],
    ['Status', 'col-status'],
    ['Created', 'col-time'],
    ['Expires', 'col-time'],
    ['Last used', 'col-time'],
    ['', 'col-actions'],
  ];
  const { table, body, emptyRow } = plainTable({ id: 'inventory', caption: 'Every key of the organisation', columns, loading: false });
  let cursor = null;
  let generation = 0;

  const query = () => {
    const params = new URLSearchParams({ limit: String(PAGE_SIZE), sort: sort.input.value });
    const who = owner.value.trim();
    if (who) params.set('user', who);
    if (status.input.value) params.set('status', status.input.value);
    if (provider.input.value) params.set('provider', provider.input.value);
    if (expiring.input.value) params.set('expiring_within_days', expiring.input.value);
    return params;
  };

  const load = async (append) => {
    const mine = ++generation;
    const params = query();
    if (append && cursor) params.set('cursor', cursor);
    let page;
    try {
      page = await request('GET', `/v1/admin/keys?${params}`);
    } catch (error) {
      if (mine === generation) {
        notices.show('error', error.message);
      }
      return;
    }
    if (mine !== generation) {
      return;
    }
    notices.clear();
    if (!append) {
      body.replaceChildren();
    }
    for (const key of page.keys) {
      body.append(keyRow(key, revoke));
    }
    if (!body.children.length) {
      body.append(emptyRow('No keys match.'));
    }
    cursor = page.next_cursor;
    more.hidden = !cursor;
    const shown = body.querySelectorAll('tr[data-id]').length;
    summary.textContent = `${shown} of ${page.total} ${page.total === 1 ? 'key' : 'keys'}`;
  };

  const revoke = (key, button) => {
    const reason = h('textarea', { id: 'revoke-reason', rows: '3', maxlength: '300', required: true });
    const reasonField = field({
      label: 'Reason',
      input: reason,
      hint: 'Recorded in the event and shown in the inventory, e.g. "found in a public repository".',
    });
    const actions = dialogActions('Cancel', 'Revoke', 'button-danger');
    const form = h('form', { class: 'form', novalidate: true }, reasonField.wrapper, actions.element);
    const what = key.kind === 'external'
      ? 'Its secret is destroyed: no job can use it again.'
      : 'It stops working at once, with every session made from it.';
    const { close } = openDialog({
      title: `Revoke ${key.owner}\u2019s key \u201c${key.name}\u201d?`,
      description: what,
      content: form,
      initialFocus: reason,
      returnFocus: () => button,
    });
    actions.cancel.addEventListener('click', () => close());
    reason.addEventListener('input', () => reasonField.clearError());
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      if (isBusy(actions.submit)) {
        return;
      }
      reasonField.clearError();
      if (!reason.value.trim()) {
        reasonField.showError('Say why the key is revoked.');
        reason.focus();
        return;
      }
      setBusy(actions.submit, true, 'Revoking\u2026');
      try {
        await request('POST', `/v1/admin/keys/${encodeURIComponent(key.id)}/revoke`, {
          body: { reason: reason.value.trim() },
        });
      } catch (error) {
        setBusy(actions.submit, false);
        reasonField.showError(error.message);
        reason.focus();
        return;
      }
      close();
      await load(false);
      notices.show('success', `Revoked ${key.owner}\u2019s key \u201c${key.name}\u201d.`);
      announce(`Revoked ${key.name}.`);
    });
  };

  let typing = null;
  filters.addEventListener('submit', (event) => {
    event.preventDefault();
    load(false);
  });
  filters.addEventListener('change', () => load(false));
  owner.addEventListener('input', () => {
    clearTimeout(typing);
    typing = setTimeout(() => load(false), 300);
  });
  more.addEventListener('click', () => load(true));
  load(false);

  return h(
    'section',
    { class: 'page' },
    pageHeading('Key inventory'),
    h(
      'p',
      { class: 'lead' },
      'Every internal and external key of the organisation: who owns it, its state and its use. ',
      canRevokeKeys() ? 'Revoke any key that should not work any more.' : '',
    ),
    notices.element,
    filters,
    summary,
    h('div', { class: 'grid-section' }, h('div', { class: 'grid-scroll' }, table)),
    h('div', { class: 'form-actions' }, more),
  );
}

function keyRow(key, revoke) {
  const kind = key.provider === 'internal' ? 'Internal' : key.provider === 'aws' ? 'AWS' : 'DNAnexus';
  const badge = {
    active: h('span', { class: 'badge badge-active' }, 'Active'),
    expired: h('span', { class: 'badge badge-expired' }, 'Expired'),
    revoked: h('span', { class: 'badge badge-expired' }, 'Revoked'),
    deleted: h('span', { class: 'badge' }, 'Deleted'),
  }[key.status] ?? h('span', { class: 'badge' }, key.status);
  const owner = key.owner_deactivated
    ? h('span', { class: 'cell-stack' }, h('code', {}, key.owner), h('span', { class: 'cell-note' }, 'deactivated'))
    : h('code', {}, key.owner);
  const scopes = key.scopes ? h('span', { class: 'cell-note' }, `scopes: ${key.scopes.join(', ')}`) : null;
  const reason = key.revoked_reason ? h('span', { class: 'status-note' }, key.revoked_reason) : null;
  let action = null;
  if (canRevokeKeys() && (key.status === 'active' || key.status === 'expired')) {
    action = h('button', { type: 'button', class: 'button button-small button-danger', 'aria-label': `Revoke ${key.owner}\u2019s key ${key.name}` }, 'Revoke');
    action.addEventListener('click', () => revoke(key, action));
  }
  return h(
    'tr',
    { dataset: { id: key.id } },
    h('th', { scope: 'row' }, h('span', { class: 'cell-stack' }, key.name, h('span', { class: 'key-id cell-note' }, shortId(key.id)), scopes)),
    h('td', { 'data-label': 'Owner' }, owner),
    h('td', { 'data-label': 'Kind' }, kind),
    h('td', { 'data-label': 'Key' }, h('code', { class: 'key-hint' }, key.hint)),
    h('td', { 'data-label': 'Status' }, h('span', { class: 'status-stack' }, badge, reason)),
    h('td', { 'data-label': 'Created' }, timeElement(key.created_at)),
    h('td', { 'data-label': 'Expires' }, timeElement(key.expires_at, 'never')),
    h('td', { 'data-label': 'Last used' }, timeElement(key.last_used_at, 'never')),
    h('td', { 'data-label': action ? 'Action' : null }, action),
  );
}
