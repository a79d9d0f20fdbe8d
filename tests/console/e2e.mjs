// End-to-end test of the keyledger web console in headless Debian Chromium, driven by
// playwright-core. Started by `cargo test` (tests/console.rs) against a real `keyledger serve`:
//
//   node tests/console/e2e.mjs <base url> <keys as JSON> [screenshot dir]
//
// keys: {"developer": {"user": "...", "key": "kl_..."}, "member": {"user": "...", "key": "kl_..."},
//        "providers": {"aws": {"access_key_id", "secret_access_key", "region"}, "dnanexus_token"}}
// The developer may manage API keys; the "member" entry is a user whose roles lack that permission (an auditor). `providers` are credentials the
// server's S3 and DNAnexus endpoints (the testkit's) accept. With a screenshot dir, every page
// and dialog is saved there as PNG (1280×800, and 390×844 for the phone).
//
// It walks the seed page's workflow at 1280×800 (sign in, create two internal keys, copy one and
// use it against the API, copy an id, roll a key and use both secrets through the grace, search,
// filter and sort, refresh and see only hints, delete with the checkboxes, roll the key the
// session was signed in with; create an AWS key, be offered only DNAnexus next, create it and
// find Create disabled, test both and rotate one in their dialogs (external-dialogs.mjs), a
// stale list refused by the API, delete them; a member is turned away), then again at 390×844 (cards). After every
// change to a grid it checks that the page does not scroll sideways and that every checkbox and
// row button is visible and on top once scrolled into view. It also checks that every request
// went to the vault's own origin, that the CSP header is there, and that the page logged no
// error.

import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

import { externalKeyDialogs } from './external-dialogs.mjs';

const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";
const CHROMIUM = process.env.KEYLEDGER_CHROMIUM || '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const WHOLE_RUN_LIMIT_MS = 240_000;
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };

const [base, keysJson, screenshotDir] = process.argv.slice(2);
if (!base || !keysJson) {
  console.error('usage: node tests/console/e2e.mjs <base url> <keys as JSON> [screenshot dir]');
  process.exit(2);
}
const origin = new URL(base).origin;
const users = JSON.parse(keysJson);
for (const who of ['developer', 'member']) {
  assert.ok(users[who]?.user && users[who]?.key, `keys JSON needs ${who}.user and ${who}.key`);
}
assert.ok(users.providers?.aws?.secret_access_key && users.providers?.dnanexus_token, 'keys JSON needs providers');
/** AWS credentials the S3 endpoint accepts. */
const AWS = users.providers.aws;
/** The same access key id with a secret S3 does not know: stored fine, refused by Test. */
const AWS_REJECTED = { ...AWS, secret_access_key: 'je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY' };
const DNANEXUS_TOKEN = users.providers.dnanexus_token;
if (screenshotDir) {
  mkdirSync(screenshotDir, { recursive: true });
}

// What every page did, for the checks at the end.
const requests = [];
const consoleErrors = [];
const pageErrors = [];
const failedRequests = [];
const errorResponses = [];
const expectedErrors = [];
const documentHeaders = [];
let stepName = 'start';
let stepCount = 0;

const watchdog = setTimeout(() => {
  console.error(`console e2e: gave up after ${WHOLE_RUN_LIMIT_MS / 1000} s, during: ${stepName}`);
  process.exit(1);
}, WHOLE_RUN_LIMIT_MS);
watchdog.unref();

function step(name) {
  stepName = name;
  stepCount += 1;
  console.log(`console e2e: ${name}`);
}

/** The next API answer `status` for `method path` is expected (a refusal the test provokes). */
function expectError(method, pathPattern, status) {
  expectedErrors.push({ method, pathPattern, status });
}

function watch(page, label) {
  page.on('request', (request) => {
    requests.push({ page: label, method: request.method(), url: request.url(), body: request.postData() });
  });
  page.on('requestfailed', (request) => {
    failedRequests.push(`${label}: ${request.method()} ${request.url()}: ${request.failure()?.errorText}`);
  });
  page.on('response', (response) => {
    const request = response.request();
    if (request.resourceType() === 'document') {
      documentHeaders.push({ url: response.url(), headers: response.headers() });
    }
    if (response.status() >= 400) {
      errorResponses.push({ method: request.method(), path: new URL(response.url()).pathname, status: response.status() });
    }
  });
  page.on('console', (message) => {
    if (message.type() === 'error' || message.type() === 'warning') {
      consoleErrors.push({ page: label, type: message.type(), text: message.text() });
    }
  });
  page.on('pageerror', (error) => pageErrors.push(`${label}: ${error.message}`));
}

async function shot(page, name) {
  if (screenshotDir) {
    await page.screenshot({ path: join(screenshotDir, `${name}.png`), animations: 'disabled', caret: 'hide' });
  }
}

async function focusedIn(page, selector) {
  return page.evaluate((s) => Boolean(document.activeElement?.closest(s)), selector);
}

async function focusedId(page) {
  return page.evaluate(() => document.activeElement?.id ?? '');
}

async function apiMe(key) {
  const response = await fetch(`${origin}/v1/me`, { headers: { Authorization: `Bearer ${key}` } });
  return { status: response.status, body: await response.json() };
}

function row(page, gridId, name) {
  return page.locator(`#${gridId} tbody tr`, { has: page.getByRole('rowheader', { name, exact: true }) });
}

/** The names in a grid's row headers, top to bottom. */
async function rowNames(page, gridId) {
  return (await page.locator(`#${gridId} tbody th[scope="row"]`).allInnerTexts()).map((t) => t.trim());
}

/**
 * The layout holds: the page does not scroll sideways, no table scrolls inside its box, and every
 * checkbox and row button is fully inside the viewport and not covered once scrolled into view.
 */
async function assertFits(page, where) {
  const widths = await page.evaluate(() => ({
    page: [document.documentElement.scrollWidth, document.documentElement.clientWidth],
    tables: Array.from(document.querySelectorAll('.grid-scroll'), (box) => [box.scrollWidth, box.clientWidth]),
  }));
  assert.ok(widths.page[0] <= widths.page[1], `${where}: the page scrolls sideways (${widths.page.join(' > ')} px)`);
  for (const [scroll, client] of widths.tables) {
    assert.ok(scroll <= client, `${where}: a table is wider than its box (${scroll} > ${client} px)`);
  }
  const controls = await page.locator('.grid input[type="checkbox"], .grid tbody button').all();
  assert.ok(controls.length > 0, `${where}: there are controls to check`);
  for (const control of controls) {
    const seen = await control.evaluate((element) => {
      element.scrollIntoView({ block: 'center', inline: 'nearest' });
      const box = element.getBoundingClientRect();
      const hit = document.elementFromPoint(box.left + box.width / 2, box.top + box.height / 2);
      return {
        inside: box.width > 0 && box.left >= 0 && box.top >= 0 && box.right <= innerWidth && box.bottom <= innerHeight,
        onTop: hit === element || element.contains(hit),
        box: [box.left, box.top, box.right, box.bottom].map(Math.round),
        name: element.getAttribute('aria-label') ?? element.textContent.trim(),
      };
    });
    assert.ok(seen.inside && seen.onTop, `${where}: ${seen.name} is not fully visible: ${JSON.stringify(seen)}`);
  }
  await page.evaluate(() => window.scrollTo(0, 0));
}

async function signIn(page, key) {
  await page.getByLabel('Internal API key').fill(key);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { level: 1, name: 'API Keys' }).waitFor();
}

async function openAvatarMenu(page) {
  await page.getByRole('button', { name: /^Account menu/ }).click();
  await page.getByRole('menu').waitFor();
}

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  args: CHROMIUM_ARGS,
  timeout: 30_000,
});
let currentPage = null;

try {
  const context = await browser.newContext({
    viewport: DESKTOP,
    locale: 'en-US',
    timezoneId: 'UTC',
    colorScheme: 'light',
    reducedMotion: 'reduce',
  });
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin });
  const page = await context.newPage();
  currentPage = page;
  page.setDefaultTimeout(10_000);
  watch(page, 'desktop');
  const developer = users.developer;

  // ---------------------------------------------------------------------------------------
  step('the page loads with its security headers');
  const landing = await page.goto(`${base}/`);
  assert.equal(landing.status(), 200);
  const headers = landing.headers();
  assert.equal(headers['content-security-policy'], CSP, 'the page carries the strict CSP');
  assert.equal(headers['x-content-type-options'], 'nosniff');
  assert.equal(headers['referrer-policy'], 'no-referrer');
  assert.equal(headers['x-frame-options'], 'DENY');
  assert.ok(headers['cache-control'], 'Cache-Control is set');
  await page.getByRole('heading', { level: 1, name: 'Sign in to keyledger' }).waitFor();
  assert.equal(await focusedId(page), 'sign-in-key', 'focus starts in the key field');
  await shot(page, '01-sign-in');

  step('sign-in: client-side and API messages');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByText('Enter your internal API key.').waitFor();
  assert.equal(await page.getByLabel('Internal API key').getAttribute('aria-invalid'), 'true');
  await page.getByLabel('Internal API key').fill('not a key');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByText(/An internal API key is kl_ followed by 38 letters and digits/).waitFor();
  expectError('POST', /^\/v1\/auth\/login$/, 401);
  await page.getByLabel('Internal API key').fill(`kl_${'A'.repeat(38)}`);
  await page.getByRole('button', { name: 'Sign in' }).click();
  const refusal = page.getByRole('alert').filter({ hasText: /\S/ });
  await refusal.waitFor();
  const refusalText = (await refusal.textContent()).trim();
  assert.ok(refusalText.length > 5, `the API's refusal is shown: ${refusalText}`);
  await shot(page, '02-sign-in-refused');

  step('sign in as the developer: the internal keys page is the default');
  await signIn(page, developer.key);
  assert.equal(new URL(page.url()).hash, '', 'the key never reaches the URL');
  assert.equal(await page.getByRole('link', { name: 'Internal' }).getAttribute('aria-current'), 'page');
  await page.locator('#internal-keys tbody tr[data-id]').first().waitFor();
  const storage = await page.evaluate(() => ({
    session: JSON.stringify(sessionStorage),
    local: localStorage.length,
  }));
  assert.ok(!storage.session.includes(developer.key), 'the key is not in sessionStorage');
  assert.ok(storage.session.includes('kls_'), 'the session token is in sessionStorage');
  assert.equal(storage.local, 0, 'nothing in localStorage');
  assert.equal(await page.locator('#sign-in-key').count(), 0, 'the key field is gone');
  await shot(page, '03-internal-keys');
  await page.locator('.skip-link').focus();
  await page.keyboard.press('Enter');
  assert.equal(await focusedId(page), 'main', 'the skip link moves focus to the content');
  assert.equal(new URL(page.url()).hash, '', 'and leaves the route alone');
  await page.getByRole('table', { name: 'Internal API keys' }).waitFor();

  step('a malformed URL hash shows the default view, not a blank page');
  // `%E0%A4%A` is a cut-off UTF-8 escape: decodeURIComponent throws a URIError on it.
  // `/?` makes it a full load rather than a same-document hash change.
  await page.goto(`${base}/?#%E0%A4%A`, { waitUntil: 'networkidle' });
  await page.locator('#internal-keys tbody tr[data-id]').first().waitFor();
  assert.equal(await page.getByRole('heading', { level: 1 }).count(), 1, 'a page is shown');
  // The same through a hash change on a page that is already running.
  await page.evaluate(() => {
    location.hash = '#/%E0%A4%A';
  });
  await page.locator('#internal-keys tbody tr[data-id]').first().waitFor();
  assert.deepEqual(pageErrors, [], 'no uncaught URIError');
  await page.evaluate(() => {
    location.hash = '';
  });
  await page.locator('#internal-keys tbody tr[data-id]').first().waitFor();

  step('the avatar menu, by keyboard');
  const avatar = page.getByRole('button', { name: /^Account menu for / });
  await avatar.focus();
  await page.keyboard.press('ArrowDown');
  await page.getByRole('menu').waitFor();
  assert.equal(await avatar.getAttribute('aria-expanded'), 'true');
  const items = await page.getByRole('menuitem').allTextContents();
  assert.deepEqual(items.map((t) => t.trim()), ['API Keys', 'Samples', 'Profile', 'Billing', 'Sign out']);
  assert.equal((await page.evaluate(() => document.activeElement.textContent)).trim(), 'API Keys');
  await page.keyboard.press('ArrowDown');
  assert.equal((await page.evaluate(() => document.activeElement.textContent)).trim(), 'Samples');
  await shot(page, '04-avatar-menu');
  await page.keyboard.press('Escape');
  await page.getByRole('menu').waitFor({ state: 'hidden' });
  assert.equal(await avatar.getAttribute('aria-expanded'), 'false');
  assert.ok(await focusedIn(page, '#avatar-button'), 'Escape gives focus back to the avatar');

  step('create dialog: validation messages, focus trap, Escape');
  const createButton = page.getByRole('button', { name: 'Create', exact: true });
  await createButton.click();
  const createDialog = page.getByRole('dialog', { name: 'Create API key' });
  await createDialog.waitFor();
  assert.equal(await focusedId(page), 'key-name', 'focus moves to the first field');
  const durationOptions = await createDialog.getByLabel('Duration').locator('option').allTextContents();
  assert.deepEqual(durationOptions, ['1 day', '7 days', '30 days', '60 days', '90 days', '1 year', 'Never', 'Custom number of days']);
  await shot(page, '05-create-key');
  await createDialog.getByRole('button', { name: 'Submit' }).click();
  await createDialog.getByText('Enter a name.').waitFor();
  assert.equal(await focusedId(page), 'key-name');
  await createDialog.getByLabel('Name').fill('laptop');
  await createDialog.getByLabel('Duration').selectOption('custom');
  await createDialog.getByLabel('Number of days').fill('ten');
  await createDialog.getByRole('button', { name: 'Submit' }).click();
  await createDialog.getByText('Enter a whole number of days, 1 or more.').waitFor();
  expectError('POST', /^\/v1\/api-keys$/, 400);
  await createDialog.getByLabel('Number of days').fill('5000');
  await createDialog.getByRole('button', { name: 'Submit' }).click();
  await createDialog.getByText('duration: must be at most 3650 days').waitFor();
  await shot(page, '06-create-key-refused');
  for (let i = 0; i < 8; i += 1) {
    await page.keyboard.press('Tab');
    assert.ok(await focusedIn(page, 'dialog'), 'Tab stays inside the dialog');
  }
  for (let i = 0; i < 8; i += 1) {
    await page.keyboard.press('Shift+Tab');
    assert.ok(await focusedIn(page, 'dialog'), 'Shift+Tab stays inside the dialog');
  }
  await page.keyboard.press('Escape');
  await createDialog.waitFor({ state: 'hidden' });
  assert.equal((await page.evaluate(() => document.activeElement.textContent)).trim(), 'Create', 'focus returns to Create');

  step('create the first key: shown once in clear text, with a copy icon');
  await createButton.click();
  await createDialog.getByLabel('Name').fill('laptop');
  await createDialog.getByLabel('Duration').selectOption('30d');
  await createDialog.getByRole('button', { name: 'Submit' }).click();
  await createDialog.waitFor({ state: 'hidden' });
  const laptopRow = row(page, 'internal-keys', 'laptop');
  await laptopRow.locator('[data-secret]').waitFor();
  await page.locator('#fresh-key-notice').waitFor();
  const laptopKey = (await laptopRow.locator('[data-secret]').textContent()).trim();
  assert.match(laptopKey, /^kl_[A-Za-z0-9]{38}$/);
  const laptopId = await laptopRow.getAttribute('data-id');
  await shot(page, '07-key-created');

  step('copy the key and use it against the API');
  await laptopRow.getByRole('button', { name: 'Copy key laptop' }).click();
  const copied = await page.evaluate(() => navigator.clipboard.readText());
  assert.equal(copied, laptopKey, 'the clipboard holds the displayed key');
  const me = await apiMe(copied);
  assert.equal(me.status, 200, JSON.stringify(me.body));
  assert.equal(me.body.user, developer.user);
  assert.equal(me.body.key_id, laptopId);

  step('create the second key with the keyboard only');
  await createButton.focus();
  await page.keyboard.press('Enter');
  await createDialog.waitFor();
  await page.keyboard.type('ci pipeline');
  await page.keyboard.press('Tab');
  assert.equal(await focusedId(page), 'key-duration');
  await createDialog.getByLabel('Duration').selectOption('1y');
  await createDialog.getByLabel('Name').focus();
  await page.keyboard.press('Enter');
  await createDialog.waitFor({ state: 'hidden' });
  const ciRow = row(page, 'internal-keys', 'ci pipeline');
  await ciRow.locator('[data-secret]').waitFor();
  const ciKey = (await ciRow.locator('[data-secret]').textContent()).trim();
  assert.equal((await apiMe(ciKey)).status, 200);
  await assertFits(page, 'desktop, two new keys in clear text');

  step('each key shows a short id with a copy button, and times with their zone');
  const laptopShortId = (await laptopRow.locator('.key-id').textContent()).trim();
  assert.ok(laptopId.startsWith(laptopShortId.replace(/\u2026$/, '')), `${laptopShortId} is a prefix of ${laptopId}`);
  assert.equal(await laptopRow.locator('.key-id').getAttribute('title'), laptopId);
  await laptopRow.getByRole('button', { name: 'Copy the id of laptop' }).click();
  await laptopRow.locator('.copyable .copy-button.copied').waitFor();
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), laptopId, 'the clipboard holds the whole id');
  const created = (await laptopRow.locator('td[data-label="Created"] time').innerText()).replace(/\s+/g, ' ');
  assert.match(created, /^[A-Z][a-z]{2} \d{1,2}, \d{4}, \d{2}:\d{2} UTC$/, 'a time carries its zone');

  step('roll a key: a new secret once, and the old one works through the grace');
  await laptopRow.getByRole('button', { name: 'Roll laptop' }).click();
  const rollDialog = page.getByRole('dialog', { name: 'Roll key \u201claptop\u201d?' });
  await rollDialog.waitFor();
  assert.equal(await focusedId(page), 'roll-grace', 'focus moves to the grace period');
  assert.equal(await rollDialog.getByLabel('Grace period').inputValue(), '1h');
  assert.equal(await rollDialog.locator('#roll-own-key').count(), 0, 'not the key this session uses');
  await shot(page, '22-roll-key');
  await rollDialog.getByRole('button', { name: 'Roll key' }).click();
  await rollDialog.waitFor({ state: 'hidden' });
  // The row still shows the key created above until the list is read again.
  await laptopRow.locator('[data-secret]').filter({ hasNotText: laptopKey }).waitFor();
  await page.locator('#fresh-key-notice').waitFor();
  const rolledKey = (await laptopRow.locator('[data-secret]').textContent()).trim();
  assert.match(rolledKey, /^kl_[A-Za-z0-9]{38}$/);
  assert.notEqual(rolledKey, laptopKey, 'a new secret');
  await page.waitForFunction(() => Boolean(document.activeElement?.closest('.secret .copy-button')));
  assert.equal(await page.evaluate(() => document.activeElement.getAttribute('aria-label')), 'Copy key laptop', 'focus is on the new secret\u2019s copy button');
  assert.equal(await laptopRow.getAttribute('data-id'), laptopId, 'under the same id');
  const rolledMe = await apiMe(rolledKey);
  assert.equal(rolledMe.status, 200, JSON.stringify(rolledMe.body));
  assert.equal(rolledMe.body.key_id, laptopId);
  assert.equal((await apiMe(laptopKey)).status, 200, 'the old secret works through the grace');
  await laptopRow.locator('td[data-label="Status"]').getByText(/Old secret works until/).waitFor();
  await assertFits(page, 'desktop, a rolled key');
  await shot(page, '23-key-rolled');

  step('search, filter and sort the keys');
  const names = () => rowNames(page, 'internal-keys');
  assert.deepEqual(await names(), ['ci pipeline', 'laptop', 'console test'], 'newest first');
  await page.getByRole('button', { name: 'Name', exact: true }).click();
  assert.deepEqual(await names(), ['ci pipeline', 'console test', 'laptop']);
  assert.equal(await page.locator('#internal-keys th[aria-sort="ascending"] button').getAttribute('data-sort'), 'name');
  await page.getByRole('button', { name: 'Name', exact: true }).click();
  assert.deepEqual(await names(), ['laptop', 'console test', 'ci pipeline']);
  assert.equal(await page.locator('#internal-keys th[aria-sort="descending"] button').getAttribute('data-sort'), 'name');
  await page.getByRole('button', { name: 'Expires', exact: true }).click();
  assert.deepEqual(await names(), ['console test', 'laptop', 'ci pipeline'], 'expires soonest first');
  await page.getByRole('button', { name: 'Created', exact: true }).click();
  assert.deepEqual(await names(), ['ci pipeline', 'laptop', 'console test'], 'created: newest first again');
  await page.getByLabel('Search by name').fill('LAP');
  assert.deepEqual(await names(), ['laptop'], 'search ignores case');
  await page.locator('.toolbar-status').getByText('Showing 1 of 3 keys').waitFor();
  await page.getByLabel('Search by name').fill('');
  await page.getByLabel('Status').selectOption('active');
  assert.deepEqual(await names(), ['ci pipeline', 'laptop', 'console test']);
  await page.getByRole('checkbox', { name: 'Select ci pipeline' }).check();
  await page.getByLabel('Status').selectOption('expired');
  assert.deepEqual(await names(), [], 'no expired key');
  await page.getByText('None of your 3 keys matches the search and filter.').waitFor();
  assert.ok(await page.getByRole('button', { name: 'Delete', exact: true }).isDisabled(), 'a hidden key is not kept selected');
  await shot(page, '24-search-filter');
  await page.getByRole('button', { name: 'Show all keys' }).click();
  assert.deepEqual(await names(), ['ci pipeline', 'laptop', 'console test']);
  assert.equal(await page.getByLabel('Status').inputValue(), 'all');

  step('refresh: only the hints are shown');
  await page.reload();
  await page.getByRole('heading', { level: 1, name: 'API Keys' }).waitFor();
  await laptopRow.waitFor();
  await ciRow.waitFor();
  assert.equal(await page.locator('[data-secret]').count(), 0, 'no clear-text key after a refresh');
  assert.equal(await page.locator('#fresh-key-notice').count(), 0);
  const pageText = await page.locator('body').innerText();
  assert.ok(![laptopKey, rolledKey, ciKey].some((key) => pageText.includes(key)), 'no key in the page');
  const hint = (key) => `${key.slice(0, 7)}\u2026${key.slice(-4)}`;
  assert.equal((await laptopRow.locator('.key-hint').textContent()).trim(), hint(rolledKey), 'the rolled secret\u2019s hint');
  assert.equal((await ciRow.locator('.key-hint').textContent()).trim(), hint(ciKey));
  await shot(page, '08-internal-keys-after-refresh');

  step('delete both keys with the checkboxes: one bulk call after a confirmation');
  const deleteButton = page.getByRole('button', { name: 'Delete', exact: true });
  assert.ok(await deleteButton.isDisabled(), 'Delete waits for a selection');
  await page.getByRole('checkbox', { name: 'Select laptop' }).check();
  await page.getByRole('checkbox', { name: 'Select ci pipeline' }).check();
  await deleteButton.click();
  const confirmDialog = page.getByRole('dialog', { name: 'Delete 2 keys?' });
  await confirmDialog.waitFor();
  assert.ok(await focusedIn(page, 'dialog'), 'focus is in the confirmation');
  await shot(page, '09-delete-keys');
  const ciId = await ciRow.getAttribute('data-id');
  const before = requests.length;
  await confirmDialog.getByRole('button', { name: 'Delete 2 keys' }).click();
  await confirmDialog.waitFor({ state: 'hidden' });
  await laptopRow.waitFor({ state: 'detached' });
  await ciRow.waitFor({ state: 'detached' });
  await page.locator('.notices').getByText('Deleted 2 keys.').waitFor();
  const deletes = requests.slice(before).filter((r) => r.url.includes('/v1/api-keys') && r.method !== 'GET');
  assert.equal(deletes.length, 1, 'one bulk call');
  assert.equal(new URL(deletes[0].url).pathname, '/v1/api-keys/delete');
  assert.deepEqual(JSON.parse(deletes[0].body).ids.sort(), [laptopId, ciId].sort());
  assert.equal((await apiMe(laptopKey)).status, 401, 'a deleted key no longer works');
  assert.equal((await apiMe(rolledKey)).status, 401);
  assert.equal((await apiMe(ciKey)).status, 401);

  step('roll the key this session signed in with, with no grace: the console stays signed in');
  const ownRow = row(page, 'internal-keys', 'console test');
  await ownRow.getByRole('button', { name: 'Roll console test' }).click();
  const ownRollDialog = page.getByRole('dialog', { name: 'Roll key \u201cconsole test\u201d?' });
  await ownRollDialog.waitFor();
  await ownRollDialog.locator('#roll-own-key').waitFor();
  await ownRollDialog.getByLabel('Grace period').selectOption('0');
  await ownRollDialog.getByRole('button', { name: 'Roll key' }).click();
  await ownRollDialog.waitFor({ state: 'hidden' });
  await ownRow.locator('[data-secret]').waitFor();
  const signedInWith = developer.key;
  developer.key = (await ownRow.locator('[data-secret]').textContent()).trim();
  assert.equal((await apiMe(developer.key)).status, 200, 'the new secret works');
  assert.equal((await apiMe(signedInWith)).status, 401, 'the old one stopped at once');
  assert.equal(await page.getByRole('heading', { name: 'Sign in to keyledger' }).count(), 0, 'still signed in');
  await page.reload();
  await ownRow.waitFor();
  assert.equal(await page.getByRole('heading', { name: 'Sign in to keyledger' }).count(), 0, 'and after a reload');

  // ---------------------------------------------------------------------------------------
  step('external keys: the tab, and the create dialog per provider');
  await page.getByRole('link', { name: 'External' }).click();
  await page.getByRole('table', { name: 'External API keys' }).waitFor();
  assert.equal(await page.getByRole('link', { name: 'External' }).getAttribute('aria-current'), 'page');
  await page.getByText(/You have no external API keys yet/).waitFor();
  const createExternal = page.getByRole('button', { name: 'Create', exact: true });
  assert.ok(await createExternal.isEnabled(), 'Create is offered with no key yet');
  await shot(page, '10-external-keys-empty');
  await createExternal.click();
  const externalDialog = page.getByRole('dialog', { name: 'Create external API key' });
  await externalDialog.waitFor();
  const providers = await externalDialog.getByLabel('Provider').locator('option').allTextContents();
  assert.deepEqual(providers, ['Select a provider', 'Amazon Web Services', 'DNAnexus']);
  await shot(page, '11-create-external-key');
  await externalDialog.getByLabel('Label').fill('genomics bucket');
  await externalDialog.getByRole('button', { name: 'Submit' }).click();
  await externalDialog.getByText('Select a provider: Amazon Web Services or DNAnexus.').waitFor();
  await externalDialog.getByLabel('Provider').selectOption('aws');
  await externalDialog.getByLabel('Access key ID').fill('AKIA-not-a-key');
  await externalDialog.getByLabel('Secret access key').fill(AWS_REJECTED.secret_access_key);
  await externalDialog.getByLabel('Region').fill(AWS_REJECTED.region);
  await externalDialog.getByLabel('Duration').selectOption('90d');
  await externalDialog.getByRole('button', { name: 'Submit' }).click();
  await externalDialog.getByText(/An AWS access key ID is AKIA or ASIA/).waitFor();
  assert.equal(await focusedId(page), 'aws-access-key-id');
  // Temporary credentials need their session token and its expiry; an access key shows neither.
  assert.ok(await externalDialog.getByLabel('Session token').isHidden(), 'no session fields for an access key');
  await externalDialog.getByLabel('Credential type').selectOption('session');
  await externalDialog.getByRole('button', { name: 'Submit' }).click();
  await externalDialog.getByText(/Paste the session token/).waitFor();
  await externalDialog.getByText(/Enter when the token expires/).waitFor();
  // An IAM role: its ARN instead of the access key, and the external ID and trust policy to
  // paste into the role before saving, each with a copy button.
  await externalDialog.getByLabel('Credential type').selectOption('role');
  assert.ok(await externalDialog.getByLabel('Access key ID').isHidden(), 'no access key for a role');
  assert.ok(await externalDialog.getByLabel('Secret access key').isHidden(), 'no secret for a role');
  assert.ok(await externalDialog.getByLabel('Session token').isHidden(), 'no session token for a role');
  const externalIdText = externalDialog.locator('#aws-external-id');
  await page.waitForFunction(() => document.querySelector('#aws-external-id')?.textContent.startsWith('kl-'));
  const externalId = await externalIdText.innerText();
  const trustPolicy = JSON.parse(await externalDialog.locator('#aws-trust-policy').innerText());
  assert.equal(trustPolicy.Statement[0].Condition.StringEquals['sts:ExternalId'], externalId);
  assert.equal(trustPolicy.Statement[0].Action, 'sts:AssumeRole');
  assert.ok(await externalDialog.getByRole('button', { name: 'Copy the external ID' }).isVisible());
  assert.ok(await externalDialog.getByRole('button', { name: 'Copy the trust policy' }).isVisible());
  await externalDialog.getByLabel('Role ARN').fill('arn:aws:iam::12:role/');
  await shot(page, '12-create-external-key-role');
  await externalDialog.getByRole('button', { name: 'Submit' }).click();
  await externalDialog.getByText(/Enter the role\u2019s ARN/).waitFor();
  assert.equal(await focusedId(page), 'aws-role-arn');
  await externalDialog.getByLabel('Credential type').selectOption('access_key');
  assert.ok(await externalDialog.getByLabel('Role ARN').isHidden(), 'the role fields go with the kind');
  assert.ok(await externalDialog.getByLabel('Session token').isHidden(), 'hidden again');
  await externalDialog.getByLabel('Access key ID').fill(AWS_REJECTED.access_key_id);
  await shot(page, '12-create-external-key-aws');
  await externalDialog.getByRole('button', { name: 'Submit' }).click();
  await externalDialog.waitFor({ state: 'hidden' });
  const awsRow = row(page, 'external-keys', 'genomics bucket');
  await awsRow.waitFor();
  const awsCells = (await awsRow.locator('td').allInnerTexts()).join(' | ');
  assert.match(awsCells, /Amazon Web Services\s+eu-west-2/, awsCells);
  assert.ok(awsCells.includes(`${AWS.access_key_id.slice(0, 4)}\u2026${AWS.access_key_id.slice(-4)}`), awsCells);
  assert.match(await awsRow.locator('td[data-label="Last used"]').innerText(), /^Never$/, 'LAST USED is shown');
  assert.ok(!(await page.locator('body').innerText()).includes(AWS_REJECTED.secret_access_key));

  step('with an AWS key, Create offers only DNAnexus');
  await createExternal.click();
  await externalDialog.waitFor();
  assert.deepEqual(await externalDialog.getByLabel('Provider').locator('option').allTextContents(), ['DNAnexus']);
  assert.equal(await externalDialog.getByLabel('Provider').inputValue(), 'dnanexus', 'the one left is chosen');
  await externalDialog.getByText('You already have a key for Amazon Web Services: one key per provider.').waitFor();
  assert.ok(await externalDialog.getByLabel('Access key ID').isHidden(), 'no AWS fields for DNAnexus');
  await externalDialog.getByLabel('Label').fill('dx project');
  await externalDialog.getByLabel('API token').fill(DNANEXUS_TOKEN);
  await externalDialog.getByLabel('Duration').selectOption('never');
  await shot(page, '14-create-external-key-dnanexus');
  await externalDialog.getByRole('button', { name: 'Submit' }).click();
  await externalDialog.waitFor({ state: 'hidden' });
  const dxRow = row(page, 'external-keys', 'dx project');
  await dxRow.waitFor();
  assert.ok((await dxRow.locator('td').allInnerTexts()).includes('DNAnexus'));

  step('with a key for each provider, Create is disabled and says why');
  assert.ok(await createExternal.isDisabled(), 'Create is disabled');
  const createNote = page.locator('#external-keys-create-note');
  assert.match(await createNote.innerText(), /You have an active key for each provider \(Amazon Web Services and DNAnexus\)/);
  assert.equal(await createExternal.getAttribute('aria-describedby'), 'external-keys-create-note');
  await assertFits(page, 'desktop, two external keys');
  await shot(page, '15-external-keys');

  await externalKeyDialogs(page, awsRow, dxRow, {
    step, shot, requests, expectError, focusedId, focusedIn, assertFits, AWS, AWS_REJECTED,
  });

  step('a list gone stale: the API\u2019s refusal in the dialog, and the list read again');
  await dxRow.getByRole('checkbox', { name: 'Select dx project' }).check();
  await page.getByRole('button', { name: 'Delete', exact: true }).click();
  const dxConfirm = page.getByRole('dialog', { name: 'Delete external key \u201cdx project\u201d?' });
  await dxConfirm.getByRole('button', { name: 'Delete external key' }).click();
  await dxRow.waitFor({ state: 'detached' });
  assert.ok(await createExternal.isEnabled(), 'Create is offered again');
  await createExternal.click();
  await externalDialog.waitFor();
  await externalDialog.getByLabel('Label').fill('dx project');
  await externalDialog.getByLabel('API token').fill(DNANEXUS_TOKEN);
  // Meanwhile, another tab stores a DNAnexus key.
  const otherTab = await fetch(`${origin}/v1/external-keys`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${developer.key}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ label: 'from another tab', provider: 'dnanexus', duration: '30d', dnanexus: { token: DNANEXUS_TOKEN } }),
  });
  assert.equal(otherTab.status, 201);
  expectError('POST', /^\/v1\/external-keys$/, 409);
  await externalDialog.getByRole('button', { name: 'Submit' }).click();
  const conflict = externalDialog.locator('#external-create-error');
  await conflict.waitFor();
  assert.match(await conflict.textContent(), /already have an external key for DNAnexus/);
  assert.equal(await conflict.getAttribute('role'), 'alert');
  await shot(page, '13-create-external-key-refused');
  await page.keyboard.press('Escape');
  await externalDialog.waitFor({ state: 'hidden' });
  await row(page, 'external-keys', 'from another tab').waitFor();
  assert.ok(await createExternal.isDisabled(), 'the list was read again');

  step('delete both external keys');
  await page.getByRole('checkbox', { name: 'Select all external keys shown' }).check();
  await page.getByRole('button', { name: 'Delete', exact: true }).click();
  const externalConfirm = page.getByRole('dialog', { name: 'Delete 2 external keys?' });
  await externalConfirm.waitFor();
  const beforeExternalDelete = requests.length;
  await externalConfirm.getByRole('button', { name: 'Delete 2 external keys' }).click();
  await externalConfirm.waitFor({ state: 'hidden' });
  await page.getByText(/You have no external API keys yet/).waitFor();
  const externalDeletes = requests
    .slice(beforeExternalDelete)
    .filter((r) => r.url.includes('/v1/external-keys') && r.method !== 'GET');
  assert.equal(externalDeletes.length, 1, 'one bulk call');
  assert.equal(JSON.parse(externalDeletes[0].body).ids.length, 2);

  // ---------------------------------------------------------------------------------------
  step('profile and billing link to the external keys; API Keys opens the internal page');
  await openAvatarMenu(page);
  await page.getByRole('menuitem', { name: 'Profile' }).click();
  await page.getByRole('heading', { level: 1, name: 'Profile' }).waitFor();
  await page.getByText('manage_user_api_keys').waitFor();
  assert.ok(await page.getByRole('link', { name: 'External API keys' }).isVisible());
  await shot(page, '17-profile');
  await page.getByRole('link', { name: 'External API keys' }).click();
  await page.getByRole('table', { name: 'External API keys' }).waitFor();
  await openAvatarMenu(page);
  await page.getByRole('menuitem', { name: 'Billing' }).click();
  await page.getByRole('heading', { level: 1, name: 'Billing' }).waitFor();
  await shot(page, '18-billing');
  await page.getByRole('link', { name: 'Manage your external API keys' }).click();
  await page.getByRole('table', { name: 'External API keys' }).waitFor();
  await openAvatarMenu(page);
  await page.getByRole('menuitem', { name: 'API Keys' }).click();
  await page.getByRole('table', { name: 'Internal API keys' }).waitFor();
  assert.equal(await page.getByRole('link', { name: 'Internal' }).getAttribute('aria-current'), 'page');

  step('sign out');
  await openAvatarMenu(page);
  await page.getByRole('menuitem', { name: 'Sign out' }).click();
  await page.getByRole('heading', { level: 1, name: 'Sign in to keyledger' }).waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.length), 0, 'the session token is forgotten');

  // ---------------------------------------------------------------------------------------
  step('a user without manage_user_api_keys sees an explanation');
  const beforeMember = requests.length;
  await page.getByLabel('Internal API key').fill(users.member.key);
  await page.getByRole('button', { name: 'Sign in' }).click();
  const refusedPanel = page.locator('#no-permission');
  await refusedPanel.waitFor();
  assert.match(await refusedPanel.innerText(), /You cannot manage API keys/);
  assert.match(await refusedPanel.innerText(), /manage_user_api_keys/, 'it names the permission');
  assert.match(await refusedPanel.innerText(), /manage_organization_users/, 'and who can grant it');
  assert.equal(await page.getByRole('table').count(), 0, 'no grid');
  await shot(page, '19-no-permission');
  await page.goto(`${base}/#/api-keys/external`);
  await refusedPanel.waitFor();
  assert.equal(await page.getByRole('table').count(), 0);
  const memberKeyCalls = requests.slice(beforeMember).filter((r) => /\/v1\/(api-keys|external-keys)/.test(r.url));
  assert.deepEqual(memberKeyCalls, [], 'the member\u2019s console does not call the key routes');
  await context.close();

  // ---------------------------------------------------------------------------------------
  step('a phone-sized screen: the keys as cards');
  const phone = await browser.newContext({
    viewport: PHONE,
    deviceScaleFactor: 2,
    isMobile: true,
    hasTouch: true,
    locale: 'en-US',
    timezoneId: 'UTC',
    colorScheme: 'light',
  });
  await phone.grantPermissions(['clipboard-read', 'clipboard-write'], { origin });
  const phonePage = await phone.newPage();
  currentPage = phonePage;
  phonePage.setDefaultTimeout(10_000);
  watch(phonePage, 'phone');
  await phonePage.goto(`${base}/`);
  await signIn(phonePage, developer.key);
  await phonePage.getByRole('button', { name: 'Create', exact: true }).click();
  const phoneDialog = phonePage.getByRole('dialog', { name: 'Create API key' });
  await phoneDialog.getByLabel('Name').fill('phone');
  await phoneDialog.getByLabel('Duration').selectOption('7d');
  await phoneDialog.getByRole('button', { name: 'Submit' }).click();
  await phoneDialog.waitFor({ state: 'hidden' });
  const phoneRow = row(phonePage, 'internal-keys', 'phone');
  await phoneRow.locator('[data-secret]').waitFor();
  await assertFits(phonePage, 'phone, a new key in clear text');
  await shot(phonePage, '20-phone-internal-keys');
  await phonePage.getByRole('button', { name: 'Create', exact: true }).click();
  await phoneDialog.waitFor();
  await shot(phonePage, '21-phone-create-key');
  await phonePage.keyboard.press('Escape');
  await phoneDialog.waitFor({ state: 'hidden' });

  step('phone: sort with the select, search, roll');
  const phoneNames = () => rowNames(phonePage, 'internal-keys');
  assert.deepEqual(await phoneNames(), ['phone', 'console test'], 'newest first');
  await phonePage.getByLabel('Sort by').selectOption('name:ascending');
  assert.deepEqual(await phoneNames(), ['console test', 'phone']);
  await phonePage.getByLabel('Search by name').fill('pho');
  assert.deepEqual(await phoneNames(), ['phone']);
  await phonePage.getByLabel('Search by name').fill('');
  await phonePage.getByLabel('Status').selectOption('expired');
  assert.deepEqual(await phoneNames(), [], 'no expired key');
  await phonePage.getByRole('button', { name: 'Show all keys' }).click();
  assert.deepEqual(await phoneNames(), ['console test', 'phone']);
  const phoneKey = (await phoneRow.locator('[data-secret]').textContent()).trim();
  await phoneRow.getByRole('button', { name: 'Roll phone' }).click();
  const phoneRoll = phonePage.getByRole('dialog', { name: 'Roll key \u201cphone\u201d?' });
  await phoneRoll.getByLabel('Grace period').selectOption('15m');
  await phoneRoll.getByRole('button', { name: 'Roll key' }).click();
  await phoneRoll.waitFor({ state: 'hidden' });
  await phoneRow.locator('[data-secret]').filter({ hasNotText: phoneKey }).waitFor();
  const phoneRolled = (await phoneRow.locator('[data-secret]').textContent()).trim();
  assert.equal((await apiMe(phoneRolled)).status, 200);
  assert.equal((await apiMe(phoneKey)).status, 200, 'the old secret works through the grace');
  await assertFits(phonePage, 'phone, a rolled key');

  step('phone: external keys as cards, tested, Create for the provider left, then disabled');
  await phonePage.getByRole('link', { name: 'External' }).click();
  await phonePage.getByText(/You have no external API keys yet/).waitFor();
  await phonePage.getByRole('button', { name: 'Create', exact: true }).click();
  const phoneExternal = phonePage.getByRole('dialog', { name: 'Create external API key' });
  await phoneExternal.getByLabel('Label').fill('genomics bucket');
  await phoneExternal.getByLabel('Provider').selectOption('aws');
  await phoneExternal.getByLabel('Access key ID').fill(AWS.access_key_id);
  await phoneExternal.getByLabel('Secret access key').fill(AWS.secret_access_key);
  await phoneExternal.getByLabel('Region').fill(AWS.region);
  await phoneExternal.getByRole('button', { name: 'Submit' }).click();
  await phoneExternal.waitFor({ state: 'hidden' });
  const phoneAws = row(phonePage, 'external-keys', 'genomics bucket');
  await phoneAws.getByRole('button', { name: 'Test genomics bucket' }).click();
  const phoneTest = phonePage.getByRole('dialog', { name: 'Test \u201cgenomics bucket\u201d' });
  await phoneTest.getByLabel('Bucket').fill('lab');
  await phoneTest.getByRole('button', { name: 'Run test' }).click();
  await phoneTest.locator('.test-summary', { hasText: /^Passed/ }).waitFor();
  await shot(phonePage, '32-phone-test-external-key');
  await phoneTest.getByRole('button', { name: 'Close' }).click();
  await phoneTest.waitFor({ state: 'hidden' });
  await phoneAws.locator('.verified .badge').waitFor();
  assert.equal((await phoneAws.locator('.verified .badge').innerText()).trim(), 'OK', 'S3 accepted the key');
  await assertFits(phonePage, 'phone, a tested external key');
  await shot(phonePage, '25-phone-external-keys');
  await phonePage.getByRole('button', { name: 'Create', exact: true }).click();
  await phoneExternal.waitFor();
  assert.deepEqual(await phoneExternal.getByLabel('Provider').locator('option').allTextContents(), ['DNAnexus']);
  await phoneExternal.getByLabel('Label').fill('dx project');
  await phoneExternal.getByLabel('API token').fill(DNANEXUS_TOKEN);
  await shot(phonePage, '26-phone-create-external-key');
  await phoneExternal.getByRole('button', { name: 'Submit' }).click();
  await phoneExternal.waitFor({ state: 'hidden' });
  await row(phonePage, 'external-keys', 'dx project').waitFor();
  assert.ok(await phonePage.getByRole('button', { name: 'Create', exact: true }).isDisabled(), 'Create is disabled');
  assert.ok(await phonePage.locator('#external-keys-create-note').isVisible(), 'and says why');
  await assertFits(phonePage, 'phone, a key for each provider');
  await phonePage.getByRole('checkbox', { name: 'Select all external keys shown' }).check();
  await phonePage.getByRole('button', { name: 'Delete', exact: true }).click();
  await phonePage.getByRole('dialog', { name: 'Delete 2 external keys?' })
    .getByRole('button', { name: 'Delete 2 external keys' }).click();
  await phonePage.getByText(/You have no external API keys yet/).waitFor();
  await phone.close();

  // ---------------------------------------------------------------------------------------
  step('every request went to the vault\u2019s own origin, with no secret in a URL');
  assert.ok(requests.length > 20, `requests were recorded (${requests.length})`);
  const foreign = requests.filter((r) => new URL(r.url).origin !== origin);
  assert.deepEqual(foreign, [], 'requests outside the vault\u2019s origin');
  const secretsInUrls = requests.filter((r) => /kls?_[A-Za-z0-9]{10,}/.test(r.url));
  assert.deepEqual(secretsInUrls, [], 'a key or token in a URL');
  assert.deepEqual(failedRequests, [], 'failed requests');
  for (const { url, headers: documentHeader } of documentHeaders) {
    assert.equal(documentHeader['content-security-policy'], CSP, `CSP on ${url}`);
  }

  step('no console errors, no uncaught exceptions, no unexpected API refusal');
  assert.deepEqual(pageErrors, [], 'uncaught exceptions');
  const unexpected = errorResponses.filter(
    (r) => !expectedErrors.some((e) => e.method === r.method && e.pathPattern.test(r.path) && e.status === r.status),
  );
  assert.deepEqual(unexpected, [], 'API refusals the test did not provoke');
  // Chromium logs every 4xx/5xx fetch as "Failed to load resource"; those are the refusals
  // above, which the console shows to the user. Anything else is a real error.
  const expectedStatuses = new Set(errorResponses.map((r) => r.status));
  const realErrors = consoleErrors.filter((m) => {
    const failed = /^Failed to load resource: the server responded with a status of (\d{3})/.exec(m.text);
    return !(failed && expectedStatuses.has(Number(failed[1])));
  });
  assert.deepEqual(realErrors, [], 'console errors or warnings');

  console.log(
    `console e2e: passed ${stepCount} steps; ${requests.length} requests, all to ${origin}; ` +
      `${errorResponses.length} deliberate API refusals shown to the user` +
      (screenshotDir ? `; screenshots in ${screenshotDir}` : ''),
  );
} catch (error) {
  console.error(`console e2e: FAILED during "${stepName}"`);
  console.error(error?.stack ?? String(error));
  if (consoleErrors.length) {
    console.error('console messages:', JSON.stringify(consoleErrors, null, 2));
  }
  if (pageErrors.length) {
    console.error('page errors:', pageErrors.join('\n'));
  }
  if (currentPage && !currentPage.isClosed()) {
    const path = join(screenshotDir || process.env.TMPDIR || '/tmp', 'console-e2e-failure.png');
    await currentPage.screenshot({ path }).then(
      () => console.error(`screenshot of the failure: ${path}`),
      () => {},
    );
  }
  process.exitCode = 1;
} finally {
  await browser.close();
  clearTimeout(watchdog);
}
