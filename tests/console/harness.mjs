// What every browser test of the console starts with: its arguments, a watchdog, headless Debian
// Chromium driven by playwright-core, a page that records its requests and errors, screenshots,
// and signing in with an internal key. Each script is started by `cargo test` through
// `browser_script` in tests/console.rs:
//
//   node tests/console/<script> <base url> <setup as JSON> [screenshot dir]

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const CHROMIUM = process.env.KEYLEDGER_CHROMIUM || '/usr/bin/chromium';

/** The script's arguments (exits 2 with a usage line when missing); the screenshot folder exists. */
export function scriptArguments(script, setupName = 'setup as JSON') {
  const [base, setupJson, screenshotDir] = process.argv.slice(2);
  if (!base || !setupJson) {
    console.error(`usage: node tests/console/${script} <base url> <${setupName}> [screenshot dir]`);
    process.exit(2);
  }
  if (screenshotDir) {
    mkdirSync(screenshotDir, { recursive: true });
  }
  return { base, origin: new URL(base).origin, setupJson, screenshotDir };
}

/** Ends the process after `seconds` whatever it waits for; clear it when done. */
export function startWatchdog(label, seconds) {
  const watchdog = setTimeout(() => {
    console.error(`${label}: gave up after ${seconds} s`);
    process.exit(1);
  }, seconds * 1000);
  watchdog.unref();
  return watchdog;
}

/** `shot(page, name, {fullPage})` writes `<name>.png` when a screenshot folder was given. */
export function screenshotter(screenshotDir) {
  return async (page, name, { fullPage = false } = {}) => {
    if (screenshotDir) {
      await page.screenshot({ path: join(screenshotDir, `${name}.png`), animations: 'disabled', caret: 'hide', fullPage });
    }
  };
}

export function launchChromium() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
    timeout: 30_000,
  });
}

/**
 * A page in a fresh light, UTC, en-US context of `viewport` (more context options in `context`),
 * whose requests go to `requests` and whose errors go to `problems`.
 */
export async function consolePage(browser, { viewport, timeout, context: options = {}, requests, problems }) {
  const context = await browser.newContext({
    viewport,
    locale: 'en-US',
    timezoneId: 'UTC',
    colorScheme: 'light',
    reducedMotion: 'reduce',
    ...options,
  });
  const page = await context.newPage();
  page.setDefaultTimeout(timeout);
  if (requests) {
    page.on('request', (r) => requests.push(r.url()));
  }
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) {
      problems.push(`console: ${m.text()}`);
    }
  });
  return { context, page };
}

/** Signs in on the start page with an internal key and waits for the API Keys page. */
export async function signIn(page, base, key) {
  await page.goto(base);
  await page.getByLabel('Internal API key').fill(key);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { level: 1, name: 'API Keys' }).waitFor();
}
