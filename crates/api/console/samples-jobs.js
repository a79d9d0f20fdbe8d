// Samples › Jobs: the user's imports, newest first, with live progress (state, files done of
// selected, skipped, bytes, rate, time left) read again every 1.5 s while any of them runs
// (poll.js, decision 0032), and Cancel for running ones.

import { request } from './api.js';
import { announce, h, isBusy, noticeArea, setBusy, timeElement } from './dom.js';
import { plainTable, shortId } from './grid.js';
import { app } from './state.js';
import { poller } from './poll.js';
import {
  describeSelection, estimateLeft, formatBytes, formatRate, RUNNING_STATES, samplesGate, samplesHeader, stateBadge,
} from './samples-shared.js';

export function jobsPage() {
  const gate = samplesGate();
  if (gate) {
    return gate;
  }
  const notices = noticeArea();
  const summary = h('p', { class: 'toolbar-status', id: 'jobs-summary', 'aria-live': 'polite' });
  const columns = [
    ['Import', 'col-selection'],
    ['State', 'col-badge'],
    ['Files', 'col-progress'],
    ['Bytes', 'col-bytes'],
    ['Rate', 'col-rate'],
    ['Time left', 'col-eta'],
    ['Started', 'col-time'],
    ['', 'col-actions'],
  ];
  const { table, body, emptyRow } = plainTable({ id: 'jobs', className: 'grid samples-grid', caption: 'Your imports', columns });
  const page = h(
    'section',
    { class: 'page' },
    samplesHeader('jobs'),
    notices.element,
    summary,
    h('div', { class: 'grid-section' }, h('div', { class: 'grid-scroll' }, table)),
  );

  const read = async () => {
    let jobs;
    try {
      ({ ingestions: jobs } = await request('GET', '/v1/ingestions'));
    } catch (error) {
      notices.show('error', `Could not read your imports: ${error.message}`);
      return false;
    }
    if (notices.element.querySelector('.notice-error')) {
      notices.clear();
    }
    draw(jobs);
    return jobs.some((job) => RUNNING_STATES.has(job.state));
  };

  const cancel = async (job, button) => {
    if (isBusy(button)) {
      return;
    }
    setBusy(button, true, 'Cancelling\u2026');
    try {
      await request('POST', `/v1/ingestions/${encodeURIComponent(job.id)}/cancel`);
      notices.show('success', `Cancelled the import of ${describeSelection(job.selection).where}.`);
      announce('The import was cancelled.');
    } catch (error) {
      notices.show('error', `Could not cancel: ${error.message}`);
    }
    poll.wake();
  };

  const draw = (jobs) => {
    const running = jobs.filter((job) => RUNNING_STATES.has(job.state)).length;
    summary.textContent = jobs.length === 0
      ? ''
      : `${jobs.length} ${jobs.length === 1 ? 'import' : 'imports'}${running ? `, ${running} running` : ''}`;
    if (jobs.length === 0) {
      body.replaceChildren(
        emptyRow('You have not imported anything yet. ', h('a', { href: '#/samples/import' }, 'Start an import'), '.'),
      );
      return;
    }
    // Focus stays on a Cancel button that is redrawn: the row is rebuilt, its button refocused.
    const focused = document.activeElement?.closest?.('tr[data-id]')?.dataset.id;
    body.replaceChildren(...jobs.map((job) => jobRow(job, cancel)));
    if (focused) {
      body.querySelector(`tr[data-id="${CSS.escape(focused)}"] button, tr[data-id="${CSS.escape(focused)}"] a`)?.focus();
    }
  };

  const poll = poller(page, read);
  app.leave = () => poll.stop();
  read().then((again) => poll.continueIf(again));
  return page;
}

/** Files done of selected, with a progress bar while it runs. */
export function filesProgress(job) {
  const done = job.files_fetched + job.files_failed + job.files_skipped;
  const selected = job.files_selected;
  const text = selected === null || selected === undefined
    ? (RUNNING_STATES.has(job.state) ? 'listing\u2026' : `${done}`)
    : `${done} of ${selected}`;
  const parts = [h('span', { class: 'progress-text' }, text)];
  if (RUNNING_STATES.has(job.state) && selected) {
    parts.push(h('progress', { max: String(selected), value: String(done), 'aria-label': `${done} of ${selected} files done` }));
  }
  const notes = [];
  if (job.files_skipped) notes.push(`${job.files_skipped} skipped (already stored)`);
  if (job.files_failed) notes.push(`${job.files_failed} failed`);
  if (notes.length) parts.push(h('span', { class: 'cell-note' }, notes.join(', ')));
  return h('span', { class: 'cell-stack' }, parts);
}

export function bytesProgress(job) {
  const total = job.bytes_selected === null || job.bytes_selected === undefined
    ? null
    : job.bytes_selected - (job.bytes_skipped ?? 0);
  return total === null ? formatBytes(job.bytes_transferred) : `${formatBytes(job.bytes_transferred)} of ${formatBytes(total)}`;
}

function jobRow(job, cancel) {
  const { where, pattern } = describeSelection(job.selection);
  const link = h('a', { href: `#/samples/jobs/${encodeURIComponent(job.id)}` }, where);
  let action = h('a', { class: 'button button-small', href: `#/samples/jobs/${encodeURIComponent(job.id)}`, 'aria-label': `Files of ${where}` }, 'Files');
  if (RUNNING_STATES.has(job.state)) {
    action = h('button', { type: 'button', class: 'button button-small button-danger', 'aria-label': `Cancel the import of ${where}` }, 'Cancel');
    action.addEventListener('click', () => cancel(job, action));
  }
  const error = job.state === 'failed' && job.error ? h('span', { class: 'status-note' }, job.error) : null;
  return h(
    'tr',
    { dataset: { id: job.id, state: job.state } },
    h(
      'th',
      { scope: 'row' },
      h(
        'span',
        { class: 'cell-stack' },
        link,
        pattern ? h('code', { class: 'cell-note' }, pattern) : null,
        h('span', { class: 'cell-note' }, '\u2192 ', job.store_path, ' \u00b7 ', shortId(job.id)),
      ),
    ),
    h('td', { 'data-label': 'State' }, h('span', { class: 'status-stack' }, stateBadge(job.state), error)),
    h('td', { 'data-label': 'Files' }, filesProgress(job)),
    h('td', { 'data-label': 'Bytes' }, bytesProgress(job)),
    h('td', { 'data-label': 'Rate' }, formatRate(job.bytes_per_second)),
    h('td', { 'data-label': 'Time left' }, estimateLeft(job) ?? '\u2014'),
    h('td', { 'data-label': 'Started' }, timeElement(job.requested_at)),
    h('td', { 'data-label': 'Action' }, action),
  );
}
