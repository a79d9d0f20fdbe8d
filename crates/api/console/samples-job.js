// Samples › a job: its state and progress (read again while it runs, poll.js), and its files —
// state, size, SHA-256 (shortened, with a copy button), and lineage: the external key, the source
// version (S3 ETag, DNAnexus file id) and when it was fetched, from the batch's manifest — each
// with a download, and its other versions from GET /v1/samples.

import { download, request } from './api.js';
import { announce, copyButton, h, noticeArea, openDialog, timeElement } from './dom.js';
import { app, pageHeading } from './state.js';
import { plainTable } from './grid.js';
import { poller } from './poll.js';
import { bytesProgress, filesProgress } from './samples-jobs.js';
import {
  describeSelection, estimateLeft, filePath, formatBytes, formatRate, loadExternalKeys, RUNNING_STATES, samplesGate, samplesTabs, stateBadge,
} from './samples-shared.js';

export function jobPage(id) {
  const gate = samplesGate();
  if (gate) {
    return gate;
  }
  const notices = noticeArea();
  const details = h('dl', { class: 'details', id: 'job-details' });
  const filesNote = h('p', { class: 'toolbar-status', id: 'job-files-summary', 'aria-live': 'polite' });
  const columns = [
    ['File', 'col-path'],
    ['State', 'col-badge'],
    ['Size', 'col-bytes'],
    ['SHA-256', 'col-sha'],
    ['Lineage', 'col-lineage'],
    ['', 'col-actions-file'],
  ];
  const { table, body, emptyRow } = plainTable({ id: 'job-files', className: 'grid samples-grid', caption: 'The files of this import', columns });
  const page = h(
    'section',
    { class: 'page' },
    samplesTabs('jobs'),
    h('p', { class: 'back-link' }, h('a', { href: '#/samples/jobs' }, '\u2190 All imports')),
    pageHeading('Import'),
    notices.element,
    h('section', { class: 'panel' }, details),
    h('h2', { class: 'section-title' }, 'Files'),
    filesNote,
    h('div', { class: 'grid-section' }, h('div', { class: 'grid-scroll' }, table)),
  );
  let labels = new Map();
  let manifestFiles = new Map();
  let manifestCount = -1;
  const keys = loadExternalKeys().then((loaded) => {
    labels = loaded.labels;
  }, () => {});

  const read = async () => {
    let job;
    try {
      job = await request('GET', `/v1/ingestions/${encodeURIComponent(id)}`);
    } catch (error) {
      notices.show('error', error.status === 404 ? 'There is no such import among yours.' : `Could not read the import: ${error.message}`);
      return false;
    }
    await keys;
    // The manifest (lineage) is read again only when more files were recorded.
    const recorded = job.files_fetched + job.files_failed;
    if (recorded !== manifestCount) {
      try {
        const manifest = await request('GET', `/v1/ingestions/${encodeURIComponent(id)}/manifest`);
        manifestFiles = new Map(manifest.files.map((file) => [file.path, file]));
        manifestCount = recorded;
      } catch (error) {
        notices.show('error', `Could not read where the files came from: ${error.message}`);
      }
    }
    draw(job);
    return RUNNING_STATES.has(job.state);
  };

  const draw = (job) => {
    const { where, pattern } = describeSelection(job.selection);
    page.querySelector('h1').textContent = `Import of ${where}`;
    document.title = `Import of ${where} \u00b7 keyledger`;
    const row = (term, ...value) => [h('dt', {}, term), h('dd', {}, ...value)];
    details.replaceChildren(
      ...row('State', h('span', { class: 'status-stack' }, stateBadge(job.state), job.error ? h('span', { class: 'status-note' }, job.error) : null)),
      ...row('Selection', h('code', {}, where), pattern ? [' matching ', h('code', {}, pattern)] : ' (every file)'),
      ...row('Stored in', h('code', {}, job.store_path)),
      ...row('Files', filesProgress(job)),
      ...row('Bytes', bytesProgress(job), job.bytes_per_second ? ` at ${formatRate(job.bytes_per_second)}` : ''),
      ...(estimateLeft(job) ? row('Time left', estimateLeft(job)) : []),
      ...row('External key', labels.get(job.external_key) ?? h('code', {}, job.external_key)),
      ...row('Started', timeElement(job.requested_at)),
      ...row('Finished', timeElement(job.finished_at, RUNNING_STATES.has(job.state) ? 'still running' : '\u2014')),
    );
    const files = job.files ?? [];
    const waiting = RUNNING_STATES.has(job.state) && job.files_pending ? ` ${job.files_pending} more waiting.` : '';
    filesNote.textContent = `${files.length} ${files.length === 1 ? 'file' : 'files'} recorded.${waiting}${job.files_skipped ? ` ${job.files_skipped} skipped: already stored in the same version by an earlier import.` : ''}`;
    if (files.length === 0) {
      body.replaceChildren(emptyRow(RUNNING_STATES.has(job.state) ? 'No file has been fetched yet.' : 'This import stored no file.'));
      return;
    }
    body.replaceChildren(...files.map((file) => fileRow(job, file, manifestFiles.get(file.path))));
  };

  const fileRow = (job, file, stored) => {
    let sha = h('span', { class: 'muted' }, '\u2014');
    if (file.sha256) {
      const digest = h('code', { class: 'sha', title: file.sha256, dataset: { sha256: file.sha256 } }, `${file.sha256.slice(0, 12)}\u2026`);
      sha = h('span', { class: 'copyable' }, digest, copyButton(`SHA-256 of ${file.path}`, () => file.sha256, digest));
    }
    const actions = [];
    if (file.state === 'verified') {
      const link = h('a', { class: 'button button-small', href: filePath(job.id, file.path), download: file.path.split('/').pop(), 'aria-label': `Download ${file.path}` }, 'Download');
      link.addEventListener('click', (event) => {
        event.preventDefault();
        download(link.getAttribute('href'), link.getAttribute('download')).catch((error) => notices.show('error', `Could not download ${file.path}: ${error.message}`));
      });
      const history = h('button', { type: 'button', class: 'button button-small', 'aria-label': `Versions of ${file.path}` }, 'Versions');
      history.addEventListener('click', () => openVersions(`${job.store_path}/${file.path}`, labels));
      actions.push(link, history);
    }
    return h(
      'tr',
      { dataset: { id: file.path, state: file.state } },
      h('th', { scope: 'row' }, h('span', { class: 'cell-stack' }, h('code', { class: 'file-path' }, file.path), file.error ? h('span', { class: 'status-note' }, file.error) : null)),
      h('td', { 'data-label': 'State' }, stateBadge(file.state)),
      h('td', { 'data-label': 'Size' }, formatBytes(file.size)),
      h('td', { 'data-label': 'SHA-256' }, sha),
      h('td', { 'data-label': 'Lineage' }, stored ? lineage(stored, labels) : h('span', { class: 'muted' }, '\u2014')),
      h('td', { 'data-label': actions.length ? 'Actions' : null }, h('div', { class: 'row-actions' }, actions)),
    );
  };

  const poll = poller(page, read);
  app.leave = () => poll.stop();
  read().then((again) => poll.continueIf(again));
  return page;
}

/** Where a stored file came from: source and version, the key, and when. */
function lineage(stored, labels) {
  const source = stored.source ?? {};
  const from = source.bucket !== undefined
    ? [h('code', {}, `s3://${source.bucket}/${source.key}`), h('span', { class: 'cell-note' }, 'ETag ', h('code', {}, source.etag || 'none listed'))]
    : [h('code', {}, `DNAnexus ${source.project}`), h('span', { class: 'cell-note' }, 'file ', h('code', {}, source.file_id))];
  return h(
    'span',
    { class: 'cell-stack lineage' },
    ...from,
    h('span', { class: 'cell-note' }, 'with ', labels.get(stored.external_key) ?? stored.external_key),
    h('span', { class: 'cell-note' }, 'fetched ', timeElement(stored.fetched_at)),
  );
}

/** The other stored versions of a file's remote source (GET /v1/samples?path=…), in a dialog. */
async function openVersions(path, labels) {
  const list = h('div', { class: 'versions' }, h('p', { class: 'muted' }, 'Loading\u2026'));
  const close = h('button', { type: 'button', class: 'button' }, 'Close');
  const dialog = openDialog({
    title: 'Versions of this file',
    description: path,
    content: h('div', { class: 'form' }, list, h('div', { class: 'dialog-actions' }, close)),
    size: 'wide',
  });
  close.addEventListener('click', () => dialog.close());
  let answer;
  try {
    answer = await request('GET', `/v1/samples?path=${encodeURIComponent(path)}`);
  } catch (error) {
    list.replaceChildren(h('p', { class: 'notice notice-error', role: 'alert' }, error.message));
    return;
  }
  const item = (version, label) =>
    h(
      'li',
      {},
      h('strong', {}, label),
      ' ',
      h('code', {}, version.path),
      h('div', { class: 'cell-note' }, formatBytes(version.size), ' \u00b7 SHA-256 ', h('code', {}, `${version.sha256.slice(0, 12)}\u2026`)),
      lineage(version, labels),
    );
  const earlier = answer.earlier ?? [];
  const later = answer.later ?? [];
  list.replaceChildren(
    h(
      'ul',
      { class: 'version-list' },
      later.slice().reverse().map((version) => item(version, 'Newer')),
      item(answer, 'This version'),
      earlier.map((version) => item(version, 'Earlier')),
    ),
    earlier.length + later.length === 0 ? h('p', { class: 'muted' }, 'No other version of this file is stored.') : null,
  );
  announce(`${earlier.length + later.length + 1} versions.`);
}
