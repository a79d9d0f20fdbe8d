// The expiry banner: the signed-in user's keys whose coming expiry the vault has announced
// (`ApiKeyExpiring` / `ExternalKeyExpiring`, at the configured horizons: 30, 7 and 1 days by
// default). The lists say which horizon was announced (`expiry_warning_days`); the banner shows
// the keys still active, nearest expiry first, above every page until the user signs out.

import { request } from './api.js';
import { formatTime, h } from './dom.js';
import { canManageKeys } from './state.js';

const BANNER_ID = 'expiry-banner';

/** Fetches the user's keys and shows (or removes) the banner. Never fails the page. */
export async function refreshExpiryBanner() {
  if (!canManageKeys()) {
    clearExpiryBanner();
    return;
  }
  let expiring = [];
  try {
    const [internal, external] = await Promise.all([
      request('GET', '/v1/api-keys'),
      request('GET', '/v1/external-keys'),
    ]);
    expiring = [
      ...announced(internal.keys, 'internal', (key) => key.name),
      ...announced(external.keys, 'external', (key) => key.label),
    ].sort((a, b) => Date.parse(a.expires_at) - Date.parse(b.expires_at));
  } catch {
    // The banner is a courtesy: a failed look leaves the pages as they are.
    return;
  }
  show(expiring);
}

export function clearExpiryBanner() {
  document.getElementById(BANNER_ID)?.remove();
}

function announced(keys, kind, nameOf) {
  return (keys ?? [])
    .filter((key) => key.status === 'active' && key.expiry_warning_days != null && key.expires_at)
    .map((key) => ({ kind, name: nameOf(key), expires_at: key.expires_at, days: key.expiry_warning_days }));
}

function show(expiring) {
  clearExpiryBanner();
  if (expiring.length === 0) {
    return;
  }
  const count = expiring.length === 1 ? 'One of your keys expires' : `${expiring.length} of your keys expire`;
  const items = expiring.map((key) => h(
    'li',
    {},
    h('a', { href: `#/api-keys/${key.kind}` }, `\u201c${key.name}\u201d`),
    ` (${key.kind}) expires within ${key.days === 1 ? '1 day' : `${key.days} days`}, on ${formatTime(key.expires_at)}.`,
  ));
  const banner = h(
    'section',
    { id: BANNER_ID, class: 'notice notice-warning expiry-banner', role: 'status', 'aria-label': 'Keys expiring soon' },
    h('p', {}, h('strong', {}, `${count} soon.`), ' Roll or replace them before they stop working.'),
    h('ul', {}, ...items),
  );
  document.getElementById('main').before(banner);
}
