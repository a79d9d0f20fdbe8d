// The console's state, shared by its pages, and the pieces every page draws with.

import { h } from './dom.js';

export const MANAGE_KEYS = 'manage_user_api_keys';

export const app = {
  /** The answer of GET /v1/me for the signed-in user. */
  me: null,
  /** Keys created on this page, in clear text, by id: memory only, forgotten on leaving. */
  freshKeys: new Map(),
  /** Runs when the current page is left. */
  leave: null,
  expiryTimer: null,
  /** Set by app.js: starts the signed-in frame again after the session's key was rolled. */
  startSession: null,
};

export function pageHeading(text) {
  return h('h1', { tabindex: '-1' }, text);
}

export function canManageKeys() {
  return Array.isArray(app.me?.permissions) && app.me.permissions.includes(MANAGE_KEYS);
}

export const IMPORT_SAMPLES = 'import_organization_samples';

export function canImportSamples() {
  return Array.isArray(app.me?.permissions) && app.me.permissions.includes(IMPORT_SAMPLES);
}
