// Browser test of the console's key inventory (decision 0026), in headless Debian Chromium
// driven by playwright-core. Started by `cargo test` (tests/console_inventory.rs) against a real
// `keyledger serve`:
//
//   node tests/console/inventory.mjs <base url> <keys as JSON> [screenshot dir]
//
// keys: {"admin": "kl_...", "member": "kl_..."}; the member (mia) owns an internal key named
// "laptop" and an AWS key labelled "lab bucket". The administrator opens the inventory from the
// avatar menu, sees everyone's keys, filters by owner, revokes mia's "laptop" with a reason and
// sees it revoked with that reason; mia has no menu item and is told why on the page. Every
// request goes to the vault's own origin and the page logs no error.

import assert from 'node:assert/strict';
import { consolePage, launchChromium, screenshotter, scriptArguments, signIn as signInAt, startWatchdog } from './harness.mjs';

const { base, origin, setupJson, screenshotDir } = scriptArguments('inventory.mjs', 'keys as JSON');
const keys = JSON.parse(setupJson);
const watchdog = startWatchdog('inventory e2e', 120);
const shot = screenshotter(screenshotDir);

const requests = [];
const problems = [];
let stepName = 'start';
const step = (name) => {
  stepName = name;
};

const browser = await launchChromium();
try {
  const { page } = await consolePage(browser, { viewport: { width: 1280, height: 800 }, timeout: 15_000, requests, problems });
  const signIn = (key) => signInAt(page, base, key);

  step('the administrator opens the inventory from the avatar menu');
  await signIn(keys.admin);
  await page.getByRole('button', { name: /^Account menu/ }).click();
  await page.getByRole('menuitem', { name: 'Key inventory' }).click();
  await page.getByRole('heading', { level: 1, name: 'Key inventory' }).waitFor();
  const row = (name) => page.locator('#inventory tbody tr').filter({ has: page.getByRole('rowheader', { name: new RegExp(`^${name}`) }) });
  await row('laptop').waitFor();
  await row('lab bucket').waitFor();
  await row('bootstrap').waitFor();
  assert.equal((await row('laptop').locator('td[data-label="Owner"]').innerText()).trim(), 'mia');
  assert.equal((await row('lab bucket').locator('td[data-label="Kind"]').innerText()).trim(), 'AWS');
  const noSideways = await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth);
  assert.ok(noSideways, 'the page does not scroll sideways');
  await shot(page, '27-key-inventory');

  step('filter by owner');
  await page.getByLabel('Owner').fill('mia');
  await page.locator('#inventory-summary').filter({ hasText: /^3 of 3 keys$/ }).waitFor();
  await assert.rejects(row('bootstrap').waitFor({ timeout: 500 }), 'the admin\u2019s key is filtered out');

  step('revoke mia\u2019s laptop key with a reason');
  await row('laptop').getByRole('button', { name: /^Revoke/ }).click();
  const dialog = page.getByRole('dialog', { name: /Revoke mia.s key .laptop.\?/ });
  await dialog.waitFor();
  await dialog.getByRole('button', { name: 'Revoke' }).click();
  await dialog.getByText('Say why the key is revoked.').waitFor();
  await dialog.getByLabel('Reason').fill('found in a public repository');
  await shot(page, '28-revoke-key');
  await dialog.getByRole('button', { name: 'Revoke' }).click();
  await dialog.waitFor({ state: 'hidden' });
  await page.getByText('Revoked mia\u2019s key \u201claptop\u201d.').waitFor();
  const revoked = row('laptop').locator('td[data-label="Status"]');
  await revoked.filter({ hasText: 'Revoked' }).waitFor();
  assert.match(await revoked.innerText(), /found in a public repository/);
  assert.equal(await row('laptop').getByRole('button', { name: /^Revoke/ }).count(), 0, 'no Revoke on a revoked key');

  step('only revoked keys');
  await page.getByLabel('Status').selectOption('revoked');
  await page.locator('#inventory-summary').filter({ hasText: /^1 of 1 key$/ }).waitFor();
  await shot(page, '29-key-inventory-revoked');

  step('a member has no inventory');
  await page.getByRole('button', { name: /^Account menu/ }).click();
  await page.getByRole('menuitem', { name: 'Sign out' }).click();
  await signIn(keys.member);
  await page.getByRole('button', { name: /^Account menu/ }).click();
  assert.equal(await page.getByRole('menuitem', { name: 'Key inventory' }).count(), 0);
  await page.keyboard.press('Escape');
  await page.goto(`${base}/#/admin/keys`);
  await page.getByText(/needs the permission audit_organization_keys/).waitFor();

  step('every request to the vault\u2019s own origin, no error');
  assert.deepEqual(requests.filter((url) => new URL(url).origin !== origin), []);
  assert.deepEqual(requests.filter((url) => /kls?_[A-Za-z0-9]{10,}/.test(url)), [], 'a key in a URL');
  assert.deepEqual(problems, []);
  console.log(`inventory e2e: passed; ${requests.length} requests, all to ${origin}`);
} catch (error) {
  console.error(`inventory e2e: FAILED during "${stepName}"`);
  console.error(error?.stack ?? String(error));
  if (problems.length) console.error(problems.join('\n'));
  process.exitCode = 1;
} finally {
  await browser.close();
  clearTimeout(watchdog);
}
