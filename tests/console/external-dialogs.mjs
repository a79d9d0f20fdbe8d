// The external keys' Test and Rotate dialogs, driven from e2e.mjs once an AWS key (stored with
// a secret S3 does not know) and a DNAnexus key are listed: the AWS key is tested on `lab` +
// `runs/` (each capability refused in S3's words), rotated to the right secret (the dialog's
// checks, the API's refusal of a region under its field, the result above the table), tested
// again (each capability passed); the DNAnexus token is tested on the project `rnaseq`.

import assert from 'node:assert/strict';

/**
 * `awsRow` and `dxRow` are the two keys' rows; `t` carries e2e.mjs's helpers and credentials:
 * `{step, shot, requests, expectError, focusedId, focusedIn, assertFits, AWS, AWS_REJECTED}`.
 */
export async function externalKeyDialogs(page, awsRow, dxRow, t) {
  const { step, shot, requests, expectError, focusedId, focusedIn, assertFits, AWS, AWS_REJECTED } = t;
  step('Test: a dialog per key, each capability passed or refused in the provider\u2019s words');
  await awsRow.getByRole('button', { name: 'Test genomics bucket' }).click();
  const testDialog = page.getByRole('dialog', { name: 'Test \u201cgenomics bucket\u201d' });
  await testDialog.waitFor();
  // A prefix without its bucket is refused before anything is sent.
  const beforeTest = requests.length;
  await testDialog.getByLabel('Prefix').fill('runs/');
  await testDialog.getByRole('button', { name: 'Run test' }).click();
  await testDialog.getByText(/Enter the bucket the prefix is in/).waitFor();
  assert.equal(await focusedId(page), 'test-bucket');
  assert.equal(requests.slice(beforeTest).filter((r) => r.url.endsWith('/verify')).length, 0, 'nothing sent');
  await testDialog.getByLabel('Bucket').fill('lab');
  await testDialog.getByRole('button', { name: 'Run test' }).click();
  const capabilityRows = testDialog.locator('.capability');
  await capabilityRows.first().waitFor();
  assert.deepEqual(await capabilityRows.locator('.capability-name').allInnerTexts(), ['List', 'Read', 'Region']);
  assert.deepEqual(await capabilityRows.locator('.badge').allInnerTexts(), ['Refused', 'Refused', 'Refused']);
  assert.match(await capabilityRows.nth(0).innerText(), /wrong secret: .*SignatureDoesNotMatch/);
  assert.match(await capabilityRows.nth(1).innerText(), /not tested: the listing of s3:\/\/lab\/runs\/ failed/);
  assert.match(await testDialog.locator('.test-summary').innerText(), /^Failed: .*s3:\/\/lab\/runs\//);
  assert.ok(!(await testDialog.innerText()).includes(AWS_REJECTED.secret_access_key), 'no secret in the result');
  const verifyCalls = requests.slice(beforeTest).filter((r) => r.url.endsWith('/verify'));
  assert.deepEqual(verifyCalls.map((r) => JSON.parse(r.body)), [{ bucket: 'lab', prefix: 'runs/' }]);
  await shot(page, '27-test-external-key-refused');
  await page.keyboard.press('Escape');
  await testDialog.waitFor({ state: 'hidden' });
  assert.ok(await focusedIn(page, 'tr[data-id] [data-action="test"]'), 'focus goes back to Test');
  assert.equal((await awsRow.locator('.verified .badge').innerText()).trim(), 'Failed', 'the row shows the outcome');
  const awsDetail = (await awsRow.locator('.verified-detail').innerText()).trim();
  assert.match(awsDetail, /^list: wrong secret/, 'the provider\u2019s reason is in the row');
  // The answer kept the key's own kind of credential, so the row still offers Rotate.
  assert.equal(await awsRow.getByRole('button', { name: 'Rotate genomics bucket' }).count(), 1, 'Rotate after Test');

  step('Rotate: the right secret in place, checked as on create, then the test passes');
  const awsId = await awsRow.getAttribute('data-id');
  await awsRow.getByRole('button', { name: 'Rotate genomics bucket' }).click();
  const rotateDialog = page.getByRole('dialog', { name: 'Rotate \u201cgenomics bucket\u201d' });
  await rotateDialog.waitFor();
  assert.equal(await rotateDialog.getByLabel('Region').inputValue(), AWS.region, 'the stored region is offered');
  assert.ok(await rotateDialog.getByLabel('Session token').isHidden(), 'no session fields for an access key');
  await rotateDialog.getByLabel('Credential type').selectOption('session');
  assert.ok(await rotateDialog.getByLabel('Session token').isVisible(), 'temporary credentials need their token');
  await rotateDialog.getByLabel('Credential type').selectOption('access_key');
  await rotateDialog.getByRole('button', { name: 'Replace secret' }).click();
  await rotateDialog.getByText(/An AWS access key ID is AKIA or ASIA/).waitFor();
  assert.equal(await focusedId(page), 'rotate-access-key-id');
  await rotateDialog.getByLabel('Access key ID').fill(AWS.access_key_id);
  await rotateDialog.getByLabel('Secret access key').fill(AWS.secret_access_key);
  // A region of the right form that AWS does not have: the API's refusal, under the field.
  await rotateDialog.getByLabel('Region').fill('mars-north-1');
  expectError('PUT', /^\/v1\/external-keys\/[^/]+\/credential$/, 400);
  await rotateDialog.getByRole('button', { name: 'Replace secret' }).click();
  await rotateDialog.getByText(/not an AWS region/).waitFor();
  assert.equal(await focusedId(page), 'rotate-region');
  await shot(page, '28-rotate-external-key');
  await rotateDialog.getByLabel('Region').fill(AWS.region);
  assert.ok(await rotateDialog.getByText(/not an AWS region/).isHidden(), 'the refusal goes once the field changes');
  await rotateDialog.getByRole('button', { name: 'Replace secret' }).click();
  await rotateDialog.waitFor({ state: 'hidden' });
  const rotatedNotice = page.locator('.notices .notice-success');
  await rotatedNotice.waitFor();
  assert.match(await rotatedNotice.innerText(), /Replaced the secret of \u201cgenomics bucket\u201d: imports started from now on use AKIA\u2026\w{4} in eu-west-2/);
  assert.equal(await awsRow.getAttribute('data-id'), awsId, 'the same key');
  assert.ok(await focusedIn(page, 'tr[data-id] [data-action="rotate"]'), 'focus stays on Rotate');
  assert.ok(!(await page.locator('body').innerText()).includes(AWS.secret_access_key), 'the secret is not shown');
  await shot(page, '29-external-key-rotated');
  await awsRow.getByRole('button', { name: 'Test genomics bucket' }).click();
  await testDialog.waitFor();
  await testDialog.getByLabel('Bucket').fill('lab');
  await testDialog.getByLabel('Prefix').fill('runs/');
  await testDialog.getByRole('button', { name: 'Run test' }).click();
  await testDialog.locator('.test-summary', { hasText: /^Passed/ }).waitFor();
  assert.deepEqual(await capabilityRows.locator('.badge').allInnerTexts(), ['Passed', 'Passed', 'Passed']);
  assert.match(await capabilityRows.nth(0).innerText(), /listed s3:\/\/lab\/runs\/ \(first object: runs\/a\.csv\)/);
  assert.match(await capabilityRows.nth(1).innerText(), /read the first byte of s3:\/\/lab\/runs\/a\.csv/);
  assert.match(await capabilityRows.nth(2).innerText(), /bucket `lab` answers in eu-west-2/);
  await shot(page, '30-test-external-key-passed');
  await testDialog.getByRole('button', { name: 'Close' }).click();
  await testDialog.waitFor({ state: 'hidden' });
  assert.equal((await awsRow.locator('.verified .badge').innerText()).trim(), 'OK', 'S3 accepted the new secret');

  step('Test a DNAnexus token on a project: its user and its access level');
  await dxRow.getByRole('button', { name: 'Test dx project' }).click();
  const dxTest = page.getByRole('dialog', { name: 'Test \u201cdx project\u201d' });
  await dxTest.waitFor();
  assert.equal(await dxTest.getByLabel('Bucket').count(), 0, 'no AWS fields for DNAnexus');
  await dxTest.getByLabel('Project').fill('rnaseq');
  await dxTest.getByRole('button', { name: 'Run test' }).click();
  const dxCapabilities = dxTest.locator('.capability');
  await dxCapabilities.first().waitFor();
  assert.deepEqual(await dxCapabilities.locator('.capability-name').allInnerTexts(), ['User', 'Access level']);
  assert.deepEqual(await dxCapabilities.locator('.badge').allInnerTexts(), ['Passed', 'Passed']);
  assert.match(await dxCapabilities.nth(0).innerText(), /it belongs to user-dana/);
  assert.match(await dxCapabilities.nth(1).innerText(), /VIEW access to rnaseq \(project-\w+\): enough to ingest/);
  await shot(page, '31-test-dnanexus-project');
  await page.keyboard.press('Escape');
  await dxTest.waitFor({ state: 'hidden' });
  assert.equal((await dxRow.locator('.verified .badge').innerText()).trim(), 'OK', 'DNAnexus accepted the token');
  assert.equal(await page.locator('.notices .notice', { hasText: /Tested|test/ }).count(), 0, 'test results are in the dialog and the rows');
  await assertFits(page, 'desktop, after Test and Rotate');
  await shot(page, '16-external-key-tested');
}
