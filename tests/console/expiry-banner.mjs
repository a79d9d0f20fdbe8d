// The expiry banner in headless Chromium (playwright-core), started by `cargo test`
// (tests/console.rs) against a real `keyledger serve` whose sweeper has announced one of the
// user's keys as expiring within 7 days:
//
//   node tests/console/expiry-banner.mjs <base url> <keys as JSON> [screenshot dir]
//
// keys: {"warned": {"key": "kl_...", "name": "..."}, "calm": {"key": "kl_..."}}: `warned` signs in
// as the user whose key was announced (its name must be in the banner); `calm` as a user with
// no announced key (no banner). With a screenshot dir the banner is saved as expiry-banner.png.

import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const CHROMIUM = process.env.KEYLEDGER_CHROMIUM || '/usr/bin/chromium';
const [base, keysJson, screenshotDir] = process.argv.slice(2);
const users = JSON.parse(keysJson);
const watchdog = setTimeout(() => {
  console.error('expiry banner e2e: gave up after 120 s');
  process.exit(1);
}, 120_000);
watchdog.unref();

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
  timeout: 30_000,
});
try {
  const errors = [];
  const context = await browser.newContext({
    viewport: { width: 1280, height: 800 },
    locale: 'en-US',
    timezoneId: 'UTC',
    colorScheme: 'light',
    reducedMotion: 'reduce',
  });
  const page = await context.newPage();
  page.on('pageerror', (error) => errors.push(error.message));
  page.on('console', (message) => {
    if (message.type() === 'error') errors.push(message.text());
  });

  async function signIn(key) {
    await page.goto(base);
    await page.getByLabel('Internal API key').fill(key);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { level: 1, name: 'API Keys' }).waitFor();
  }

  // The user with an announced key sees it named, with its horizon, above the page.
  await signIn(users.warned.key);
  const banner = page.getByRole('status', { name: 'Keys expiring soon' });
  await banner.waitFor();
  const text = await banner.innerText();
  assert.match(text, /One of your keys expires soon\./, text);
  assert.ok(text.includes(`\u201c${users.warned.name}\u201d (internal) expires within 7 days`), text);
  // Its link leads to the internal keys, and the banner stays while the user moves around.
  await banner.getByRole('link', { name: `\u201c${users.warned.name}\u201d` }).click();
  await page.waitForURL(/#\/api-keys\/internal$/);
  await banner.waitFor();
  if (screenshotDir) {
    mkdirSync(screenshotDir, { recursive: true });
    await page.screenshot({ path: join(screenshotDir, 'expiry-banner.png') });
  }
  console.log('expiry banner e2e: the warned user sees the banner');

  // Signing out removes it; a user without announced keys never sees one.
  await page.getByRole('button', { name: /^Account menu/ }).click();
  await page.getByRole('menuitem', { name: 'Sign out' }).click();
  await page.getByLabel('Internal API key').waitFor();
  assert.equal(await page.locator('#expiry-banner').count(), 0, 'the banner left with the user');
  await signIn(users.calm.key);
  // The banner's look is done once the lists it reads have answered.
  await page.waitForLoadState('networkidle');
  assert.equal(await page.locator('#expiry-banner').count(), 0, 'no banner without announced keys');

  assert.deepEqual(errors, [], 'the page logged no error');
  console.log('expiry banner e2e: passed');
} finally {
  await browser.close();
}
