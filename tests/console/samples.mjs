// Browser test of the console's Samples pages (issue 20, point 4), in headless Debian Chromium
// driven by playwright-core. Started by `cargo test` (tests/console_samples.rs) against a real
// `keyledger serve` whose S3 endpoint is a fault proxy in front of the testkit's S3 server:
//
//   node tests/console/samples.mjs <base url> <setup as JSON> [screenshot dir]
//
// setup: {sam, nokey (whose every-minute source was refused: no key), auditor (internal keys), aws_key_id (sam's AWS key), proxy (its base URL),
// sha256 and contents (of each object under s3://lab/runs/, by path)}. The proxy holds the GET of
// runs/plate-2/c.csv until this script asks for /console-release-1, and that of
// runs/reads.fastq until /console-release-2: a job runs for exactly as long as the test needs.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { consolePage, launchChromium, screenshotter, scriptArguments, signIn as signInAt, startWatchdog } from './harness.mjs';

const { base, origin, setupJson, screenshotDir } = scriptArguments('samples.mjs');
const setup = JSON.parse(setupJson);
const watchdog = startWatchdog('samples e2e', 270);
const takeShot = screenshotter(screenshotDir);
const shot = (page, name, { fullPage = true } = {}) => takeShot(page, name, { fullPage });

const requests = [];
const problems = [];
let stepName = 'start';
const step = (name) => {
  stepName = name;
};
/** Opens a gate of the proxy: the held object's GET goes on. */
const release = async (n) => {
  await fetch(`${setup.proxy}/console-release-${n}`).catch(() => {});
};
const noSideways = async (page) => {
  const fits = await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth);
  assert.ok(fits, 'the page does not scroll sideways');
};

const browser = await launchChromium();
try {
  // Generous timeout: both cores are shared with other builds.
  const { context, page } = await consolePage(browser, {
    viewport: { width: 1280, height: 800 },
    timeout: 60_000,
    context: { acceptDownloads: true },
    requests,
    problems,
  });
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin });
  const signIn = (key) => signInAt(page, base, key);
  const signOut = async () => {
    await page.getByRole('button', { name: /^Account menu/ }).click();
    await page.getByRole('menuitem', { name: 'Sign out' }).click();
  };
  const preview = page.locator('#preview');
  const previewSays = (text) => page.locator('#preview:not([data-state="waiting"]) #preview-status').filter({ hasText: text }).waitFor();
  const fieldError = (id) => page.locator(`#${id}-error`);
  const tab = (name) => page.getByRole('navigation', { name: 'Samples pages' }).getByRole('link', { name, exact: true });
  const jobRow = (id) => page.locator(`#jobs tbody tr[data-id="${id}"]`);
  const jobIdFromUrl = () => decodeURIComponent(new URL(page.url()).hash.replace('#/samples/jobs/', ''));

  step('sam opens Samples from the avatar menu');
  await signIn(setup.sam);
  await page.getByRole('button', { name: /^Account menu/ }).click();
  await page.getByRole('menuitem', { name: 'Samples' }).click();
  await page.getByRole('heading', { level: 1, name: 'Samples' }).waitFor();
  await page.locator('#import-provider').waitFor();
  const offered = await page.locator('#import-provider option').allInnerTexts();
  assert.deepEqual(offered, ['AWS S3'], 'only the provider sam has a key for');
  await page.getByText('you have none for DNAnexus').waitFor();
  assert.equal(await page.getByRole('link', { name: 'Add a DNAnexus key' }).getAttribute('href'), '#/api-keys/external');
  await page.getByText('Enter a bucket to see what it matches.').waitFor();

  step('the live preview follows the selection');
  await page.locator('#import-bucket').fill('lab');
  await previewSays('5 files');
  await page.locator('#import-prefix').fill('runs/');
  await page.locator('#import-pattern').fill('\\.csv$');
  await previewSays(/^3 files, 64 bytes in total/);
  const listed = await page.locator('#preview .preview-path').allInnerTexts();
  assert.deepEqual(listed, ['plate-1/a.csv', 'plate-1/b.csv', 'plate-2/c.csv']);
  await noSideways(page);
  await shot(page, '33-samples-import-preview');

  step('a bad regex is pointed at its field');
  await page.locator('#import-pattern').fill('(\\.csv$');
  await fieldError('import-pattern').filter({ hasText: /^Not a valid regular expression/ }).waitFor();
  assert.equal(await page.locator('#import-pattern').getAttribute('aria-invalid'), 'true');
  await shot(page, '34-samples-bad-regex');
  await page.locator('#import-pattern').fill('\\.csv$');
  await previewSays(/^3 files/);
  assert.equal(await fieldError('import-pattern').isHidden(), true, 'the error goes when the regex is fixed');

  step('nothing matched, and a bucket that does not exist');
  await page.locator('#import-pattern').fill('\\.bam$');
  await previewSays(/^Nothing matched/);
  await page.locator('#import-pattern').fill('\\.csv$');
  await page.locator('#import-bucket').fill('no-such-bucket');
  await fieldError('import-bucket').filter({ hasText: /no such bucket/ }).waitFor();
  await page.locator('#import-bucket').fill('lab');
  await previewSays(/^3 files/);

  step('typing fast: only the answer for the last input is shown');
  await page.locator('#import-prefix').fill('');
  await page.locator('#import-prefix').pressSequentially('runs/plate-1/');
  await previewSays(/^2 files/);
  assert.deepEqual(await page.locator('#preview .preview-path').allInnerTexts(), ['a.csv', 'b.csv']);
  await page.locator('#import-prefix').fill('runs/');
  await previewSays(/^3 files/);

  step('Start opens the job, which runs');
  await page.getByRole('button', { name: 'Start import' }).click();
  await page.getByRole('heading', { level: 1, name: 'Import of s3://lab/runs/' }).waitFor();
  const jobId = jobIdFromUrl();
  assert.match(jobId, /^ing_/);
  await page.locator('#job-files tbody tr[data-id="plate-1/a.csv"][data-state="verified"]').waitFor();
  await page.locator('#job-files tbody tr[data-id="plate-1/b.csv"][data-state="verified"]').waitFor();

  step('the jobs list shows it running, then finished, without a reload');
  await page.getByRole('link', { name: 'All imports' }).click();
  await jobRow(jobId).locator('td[data-label="Files"]').filter({ hasText: /^2 of 3/ }).waitFor();
  assert.match(await jobRow(jobId).getAttribute('data-state'), /^(listing|fetching)$/);
  await jobRow(jobId).locator('progress').waitFor();
  await jobRow(jobId).getByRole('button', { name: /^Cancel the import/ }).waitFor();
  await noSideways(page);
  await shot(page, '35-samples-jobs-running');
  await page.evaluate(() => {
    window.samplesTestMarker = 'not reloaded';
  });
  await release(1);
  await page.locator(`#jobs tbody tr[data-id="${jobId}"][data-state="completed"]`).waitFor();
  assert.equal(await page.evaluate(() => window.samplesTestMarker), 'not reloaded', 'the page was not reloaded');
  assert.match(await jobRow(jobId).locator('td[data-label="Files"]').innerText(), /^3 of 3/);

  step('its files: state, size, SHA-256 and lineage');
  await jobRow(jobId).getByRole('link', { name: 's3://lab/runs/', exact: true }).click();
  const fileRow = (path) => page.locator(`#job-files tbody tr[data-id="${path}"]`);
  for (const path of ['plate-1/a.csv', 'plate-1/b.csv', 'plate-2/c.csv']) {
    await fileRow(path).and(page.locator('[data-state="verified"]')).waitFor();
    assert.equal(await fileRow(path).locator('[data-sha256]').getAttribute('data-sha256'), setup.sha256[path]);
    const lineage = await fileRow(path).locator('td[data-label="Lineage"]').innerText();
    assert.match(lineage, new RegExp(`s3://lab/runs/${path}`));
    assert.match(lineage, /with lab bucket/);
    assert.match(lineage, /fetched Dec|fetched [A-Z][a-z]{2} \d/);
  }
  assert.equal(await fileRow('plate-1/a.csv').locator('td[data-label="Size"]').innerText(), `${setup.contents['plate-1/a.csv'].length} bytes`);
  await page.locator('#job-details').getByText('Completed').waitFor();
  await page.locator('#job-details').getByText('lab bucket').waitFor();
  await fileRow('plate-1/a.csv').getByRole('button', { name: /^Copy the SHA-256/ }).click();
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), setup.sha256['plate-1/a.csv']);

  step('download a file');
  const [downloaded] = await Promise.all([
    page.waitForEvent('download'),
    fileRow('plate-1/a.csv').getByRole('link', { name: 'Download plate-1/a.csv' }).click(),
  ]);
  assert.equal(downloaded.suggestedFilename(), 'a.csv');
  assert.equal(readFileSync(await downloaded.path(), 'utf8'), setup.contents['plate-1/a.csv']);

  await shot(page, '36-samples-job-files');

  step('its versions');
  await fileRow('plate-1/a.csv').getByRole('button', { name: 'Versions of plate-1/a.csv' }).click();
  const versions = page.getByRole('dialog', { name: 'Versions of this file' });
  await versions.getByText('No other version of this file is stored.').waitFor();
  await versions.getByText('This version').waitFor();
  await shot(page, '37-samples-file-versions', { fullPage: false });
  await page.keyboard.press('Escape');
  await versions.waitFor({ state: 'hidden' });

  step('Cancel a running import');
  await tab('Import').click();
  await page.locator('#import-bucket').fill('lab');
  await page.locator('#import-prefix').fill('runs/');
  await page.locator('#import-pattern').fill('\\.fastq$');
  await previewSays(/^1 file,/);
  await page.getByRole('button', { name: 'Start import' }).click();
  await page.getByRole('heading', { level: 1, name: 'Import of s3://lab/runs/' }).waitFor();
  const heldId = jobIdFromUrl();
  await page.getByRole('link', { name: 'All imports' }).click();
  await page.locator(`#jobs tbody tr[data-id="${heldId}"][data-state="fetching"]`).waitFor();
  await jobRow(heldId).getByRole('button', { name: /^Cancel the import/ }).click();
  await release(2);
  await page.locator(`#jobs tbody tr[data-id="${heldId}"][data-state="cancelled"]`).waitFor();
  await page.getByText('Cancelled the import of s3://lab/runs/.').waitFor();

  step('save the selection as a source, with a schedule');
  await tab('Import').click();
  await page.locator('#import-bucket').fill('lab');
  await page.locator('#import-prefix').fill('runs/');
  await page.locator('#import-pattern').fill('\\.csv$');
  await previewSays(/^3 files/);
  await page.getByRole('button', { name: 'Save as source\u2026' }).click();
  const saveDialog = page.getByRole('dialog', { name: 'Save as source' });
  await saveDialog.getByRole('button', { name: 'Save source' }).click();
  await saveDialog.getByText('Enter a name.').waitFor();
  await saveDialog.getByLabel('Name').fill('nightly plates');
  await saveDialog.getByLabel('Schedule (cron, optional)').fill('every night');
  await saveDialog.getByLabel('Time zone').selectOption('Europe/Zurich');
  await saveDialog.getByRole('button', { name: 'Save source' }).click();
  await page.locator('#source-schedule[aria-invalid="true"]').waitFor();
  await saveDialog.getByLabel('Schedule (cron, optional)').fill('0 2 * * *');
  await shot(page, '41-samples-save-source', { fullPage: false });
  await saveDialog.getByRole('button', { name: 'Save source' }).click();
  await saveDialog.waitFor({ state: 'hidden' });
  await page.getByText('Saved the source \u201cnightly plates\u201d.').waitFor();
  await page.getByRole('link', { name: 'See your saved sources' }).click();
  const sourceRow = page.locator('#sources tbody tr').filter({ has: page.getByRole('rowheader', { name: /^nightly plates/ }) });
  await sourceRow.waitFor();
  assert.match(await sourceRow.locator('td[data-label="Schedule"]').innerText(), /0 2 \* \* \*\s+Europe\/Zurich/);
  await sourceRow.locator('td[data-label="Next run"] time').waitFor();
  assert.match(await sourceRow.locator('td[data-label="Last run"]').innerText(), /never run/);
  assert.equal(await sourceRow.getAttribute('data-state'), 'active');

  step('run it now: an ordinary import, which skips what is stored');
  await sourceRow.getByRole('button', { name: 'Run now nightly plates' }).click();
  await page.getByText('Started a run of \u201cnightly plates\u201d.').waitFor();
  await sourceRow.locator('td[data-label="Last run"] a').waitFor();
  await shot(page, '42-samples-sources');
  await page.getByRole('link', { name: 'Watch it' }).click();
  await page.getByRole('heading', { level: 1, name: 'Import of s3://lab/runs/' }).waitFor();
  await page.locator('#job-details').getByText('Completed').waitFor();
  await page.locator('#job-files-summary').filter({ hasText: '3 skipped: already stored' }).waitFor();

  step('pause and resume it');
  await tab('Saved sources').click();
  await sourceRow.locator('td[data-label="Last run"]').getByText('Completed').waitFor();
  await sourceRow.getByRole('button', { name: 'Pause nightly plates' }).click();
  await page.locator('#sources tbody tr[data-state="paused"]').waitFor();
  assert.match(await sourceRow.locator('td[data-label="Next run"]').innerText(), /paused/);
  await sourceRow.getByRole('button', { name: 'Resume nightly plates' }).click();
  await page.locator('#sources tbody tr[data-state="active"]').waitFor();

  step('phone width');
  await page.setViewportSize({ width: 390, height: 844 });
  await tab('Jobs').click();
  await page.locator(`#jobs tbody tr[data-id="${heldId}"][data-state="cancelled"]`).waitFor();
  await noSideways(page);
  await shot(page, '38-phone-samples-jobs');
  await tab('Import').click();
  await page.locator('#import-bucket').fill('lab');
  await page.locator('#import-prefix').fill('runs/');
  await page.locator('#import-pattern').fill('\\.csv$');
  await previewSays(/^3 files/);
  await noSideways(page);
  await shot(page, '39-phone-samples-import');
  await tab('Saved sources').click();
  await sourceRow.waitFor();
  await noSideways(page);
  await shot(page, '43-phone-samples-sources');
  await page.setViewportSize({ width: 1280, height: 800 });

  step('delete the source');
  await sourceRow.getByRole('button', { name: 'Delete nightly plates' }).click();
  const deleteDialog = page.getByRole('dialog', { name: 'Delete the source \u201cnightly plates\u201d?' });
  await deleteDialog.getByRole('button', { name: 'Delete source' }).click();
  await deleteDialog.waitFor({ state: 'hidden' });
  await page.getByText('No saved sources yet.').waitFor();
  await tab('Import').click();
  await page.locator('#import-bucket').fill('lab');
  await page.locator('#import-prefix').fill('runs/');
  await previewSays(/^5 files/);

  step('the API\u2019s "no usable key", in words, with a link');
  const deleted = await fetch(`${base}/v1/external-keys/delete`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${setup.sam}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ ids: [setup.aws_key_id] }),
  });
  assert.equal(deleted.status, 200, await deleted.text());
  await page.locator('#import-pattern').fill('\\.tsv$');
  await previewSays(/You have no usable AWS S3 key/);
  assert.equal(await preview.getByRole('link', { name: 'Add a key in External keys' }).getAttribute('href'), '#/api-keys/external');
  await signOut();

  step('a DNAnexus import: project, folder, pattern; lineage with the file id');
  await signIn(setup.dee);
  await page.goto(`${base}/#/samples/import`);
  await page.locator('#import-project').waitFor();
  assert.deepEqual(await page.locator('#import-provider option').allInnerTexts(), ['DNAnexus']);
  assert.equal(await page.locator('#import-bucket').isVisible(), false, 'no S3 fields for DNAnexus');
  await page.locator('#import-project').fill('rnaseq');
  await page.locator('#import-folder').fill('/quant');
  await page.locator('#import-pattern').fill('\\.sf$');
  await previewSays(/^2 files/);
  assert.deepEqual(await page.locator('#preview .preview-path').allInnerTexts(), ['s1.sf', 's2.sf']);
  await page.locator('#import-project').fill('no-such-project');
  await fieldError('import-project').filter({ hasText: /no such project/ }).waitFor();
  await page.locator('#import-project').fill('rnaseq');
  await previewSays(/^2 files/);
  await page.getByRole('button', { name: 'Start import' }).click();
  await page.getByRole('heading', { level: 1, name: /^Import of rnaseq:\/quant/ }).waitFor();
  await page.locator('#job-details').getByText('Completed').waitFor();
  await page.locator('#job-files tbody tr[data-id="s2.sf"][data-state="verified"]').waitFor();
  const dxLineage = await page.locator('#job-files tbody tr[data-id="s1.sf"] td[data-label="Lineage"]').innerText();
  assert.match(dxLineage, /rnaseq|project-/);
  assert.match(dxLineage, /file-[A-Za-z0-9]+/);
  assert.match(dxLineage, /with dx lab/);
  await signOut();

  step('a user without a key is sent to External keys');
  await signIn(setup.nokey);
  await page.goto(`${base}/#/samples/import`);
  await page.locator('#no-usable-key').getByText('you have no usable one').waitFor();
  assert.equal(await page.locator('#no-usable-key').getByRole('link', { name: 'Add one in External keys' }).getAttribute('href'), '#/api-keys/external');
  await shot(page, '40-samples-no-key');
  await tab('Jobs').click();
  await page.getByText('You have not imported anything yet.').waitFor();

  step('a scheduled run refused for lack of a key: a warning line, a link to External keys');
  await tab('Saved sources').click();
  const refusedRow = page.locator('#sources tbody tr').filter({ has: page.getByRole('rowheader', { name: /^every minute/ }) });
  const refusal = refusedRow.locator('.source-refusal');
  await refusal.waitFor();
  assert.match(await refusal.innerText(), /^Did not run \(.+\): you have no usable external key for Amazon Web Services/);
  assert.equal(await refusal.getByRole('link', { name: 'Fix it in External keys' }).getAttribute('href'), '#/api-keys/external');
  await shot(page, '44-samples-source-refused');
  await signOut();

  step('a user without the permission has no Samples');
  await signIn(setup.auditor);
  await page.getByRole('button', { name: /^Account menu/ }).click();
  assert.equal(await page.getByRole('menuitem', { name: 'Samples' }).count(), 0);
  await page.keyboard.press('Escape');
  await page.goto(`${base}/#/samples/jobs`);
  await page.locator('#no-import-permission').getByText('import_organization_samples').waitFor();

  step('every request to the vault\u2019s own origin, no error');
  assert.deepEqual(requests.filter((url) => new URL(url).origin !== origin && !url.startsWith('blob:')), []);
  assert.deepEqual(requests.filter((url) => /kls?_[A-Za-z0-9]{10,}/.test(url)), [], 'a key in a URL');
  assert.deepEqual(problems, []);
  console.log(`samples e2e: passed; ${requests.length} requests, all to ${origin}`);
} catch (error) {
  console.error(`samples e2e: FAILED during "${stepName}"`);
  console.error(error?.stack ?? String(error));
  if (problems.length) console.error(problems.join('\n'));
  process.exitCode = 1;
} finally {
  await browser.close();
  clearTimeout(watchdog);
}
