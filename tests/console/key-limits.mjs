// Browser test of the create dialog's limits (scopes, client networks, honeytoken), in headless
// Debian Chromium driven by playwright-core. Started by `cargo test`
// (tests/console_key_limits.rs) against a real `keyledger serve`:
//
//   node tests/console/key-limits.mjs <base url> <key> [screenshot dir]
//
// The key is a developer's (manage_user_api_keys, import_organization_samples). They create a
// key limited to one permission and one network, are told what is wrong with a bad network,
// and create a honeytoken; the list says what each key is limited to.

import assert from 'node:assert/strict';
import { consolePage, launchChromium, screenshotter, scriptArguments, signIn, startWatchdog } from './harness.mjs';

const { base, setupJson: key, screenshotDir } = scriptArguments('key-limits.mjs', 'key');
const watchdog = startWatchdog('key limits e2e', 120);
const shot = screenshotter(screenshotDir);

const problems = [];
let stepName = 'start';
const step = (name) => {
  stepName = name;
};

const browser = await launchChromium();
try {
  const { page } = await consolePage(browser, { viewport: { width: 1280, height: 900 }, timeout: 15_000, problems });
  await signIn(page, base, key);
  const row = (name) => page.locator('#internal-keys tbody tr').filter({ has: page.getByRole('rowheader', { name: new RegExp(`^${name}`) }) });
  const openCreate = async () => {
    await page.getByRole('button', { name: 'Create', exact: true }).click();
    const dialog = page.getByRole('dialog', { name: 'Create API key' });
    await dialog.waitFor();
    return dialog;
  };

  step('a bad network is refused at its field');
  let dialog = await openCreate();
  assert.equal(await dialog.getByLabel('Client networks').isVisible(), false, 'the limits are folded away');
  await dialog.getByLabel('Name').fill('ci deploy');
  await dialog.getByText('Limits (optional)').click();
  await dialog.getByLabel('Manage API keys').check();
  await dialog.getByLabel('Client networks').fill('192.0.2.1\n10.0.0.0/33');
  await dialog.getByRole('button', { name: 'Submit' }).click();
  await dialog.locator('#key-networks[aria-invalid="true"]').waitFor();
  assert.match(await dialog.locator('#key-networks-error').innerText(), /entry 2 of 2: a prefix length is at most 32/);
  await shot(page, 'key-limits-create');

  step('a key limited to one permission and one network');
  await dialog.getByLabel('Client networks').fill('203.0.113.0/24');
  await dialog.getByRole('button', { name: 'Submit' }).click();
  await dialog.waitFor({ state: 'hidden' });
  await row('ci deploy').getByText('only: Manage API keys; from 203.0.113.0/24').waitFor();

  step('a honeytoken');
  dialog = await openCreate();
  await dialog.getByLabel('Name').fill('decoy');
  await dialog.getByText('Limits (optional)').click();
  await dialog.getByLabel('Honeytoken').check();
  assert.ok(await dialog.getByLabel('Client networks').isDisabled(), 'a honeytoken takes no networks');
  await dialog.getByRole('button', { name: 'Submit' }).click();
  await dialog.waitFor({ state: 'hidden' });
  await row('decoy').getByText('Honeytoken', { exact: true }).waitFor();
  await shot(page, 'key-limits-listed');

  step('no error on the page');
  assert.deepEqual(problems, []);
  console.log('key limits e2e: passed');
} catch (error) {
  console.error(`key limits e2e: FAILED during "${stepName}"`);
  console.error(error?.stack ?? String(error));
  if (problems.length) console.error(problems.join('\n'));
  process.exitCode = 1;
} finally {
  await browser.close();
  clearTimeout(watchdog);
}
