// Samples › Saved sources: selections saved with an optional schedule (cron, in an explicit time
// zone), each run an ordinary import. The list shows the schedule, the next run and the last
// run's state (read again while a last run runs, poll.js), and, under the source's name, a
// warning line when the schedule's last run was refused (`last_refusal`: no usable key…); Run
// now, Pause / Resume and Delete act on one source. `openSaveSource` saves the import form's
// selection (POST /v1/sources).

import { newRequestId, request } from './api.js';
import {
  announce, dialogActions, field, h, isBusy, noticeArea, openDialog, setBusy, timeElement,
} from './dom.js';
import { app } from './state.js';
import { plainTable } from './grid.js';
import { poller } from './poll.js';
import {
  describeSelection, explainRefusal, externalKeysLink, RUNNING_STATES, samplesGate, samplesHeader, stateBadge,
} from './samples-shared.js';

export function sourcesPage() {
  const gate = samplesGate();
  if (gate) {
    return gate;
  }
  const notices = noticeArea();
  const columns = [
    ['Source', 'col-selection'],
    ['Schedule', 'col-schedule'],
    ['Next run', 'col-time'],
    ['Last run', 'col-lastrun'],
    ['State', 'col-badge'],
    ['', 'col-actions-source'],
  ];
  const { table, body, emptyRow } = plainTable({ id: 'sources', className: 'grid samples-grid', caption: 'Your saved sources', columns });
  const load = async () => {
    let sources;
    try {
      ({ sources } = await request('GET', '/v1/sources'));
    } catch (error) {
      notices.show('error', `Could not read your saved sources: ${error.message}`);
      return false;
    }
    if (sources.length === 0) {
      body.replaceChildren(
        emptyRow('No saved sources yet. On ', h('a', { href: '#/samples/import' }, 'Import'), ', fill in a selection and press \u201cSave as source\u201d.'),
      );
      return false;
    }
    body.replaceChildren(...sources.map((source) => sourceRow(source, act)));
    return sources.some((source) => RUNNING_STATES.has(source.last_run?.state));
  };

  /** One action on a source; the list is read again after it. */
  const act = async (source, button, action) => {
    if (isBusy(button)) {
      return;
    }
    const path = `/v1/sources/${encodeURIComponent(source.id)}`;
    if (action === 'delete') {
      confirmDelete(source, button, async () => {
        await request('DELETE', path);
        notices.show('success', `Deleted the source \u201c${source.name}\u201d. Its imports and their files stay.`);
        poll.wake();
      });
      return;
    }
    setBusy(button, true, { run: 'Starting\u2026', pause: 'Pausing\u2026', resume: 'Resuming\u2026' }[action]);
    try {
      const answer = await request('POST', `${path}/${action}`);
      if (action === 'run') {
        notices.show('success', `Started a run of \u201c${source.name}\u201d. `, h('a', { href: `#/samples/jobs/${encodeURIComponent(answer.id)}` }, 'Watch it'), '.');
      } else {
        notices.show('success', `${action === 'pause' ? 'Paused' : 'Resumed'} \u201c${source.name}\u201d.`);
      }
      announce(action === 'run' ? 'The run has started.' : `The source is ${action === 'pause' ? 'paused' : 'active'}.`);
    } catch (error) {
      notices.show('error', error.code === 'source_running'
        ? `\u201c${source.name}\u201d is running already: a source runs once at a time. ${error.message}`
        : `Could not ${action} \u201c${source.name}\u201d: ${error.message}`);
    }
    setBusy(button, false);
    poll.wake();
  };

  const page = h(
    'section',
    { class: 'page' },
    samplesHeader('sources'),
    h('p', {}, 'A saved source is a selection to import again, now or on a schedule. Each run is an ordinary import: it fetches only what changed since the last one.'),
    notices.element,
    h('div', { class: 'grid-section' }, h('div', { class: 'grid-scroll' }, table)),
  );
  const poll = poller(page, load);
  app.leave = () => poll.stop();
  load().then((again) => poll.continueIf(again));
  return page;
}

/**
 * A scheduled run the vault refused (and no run since): a warning line with its reason, and a
 * link to External keys when the reason is about the key (no usable key, expired credentials).
 */
function refusalLine(refusal) {
  const aboutKey = /external key|credentials/i.test(refusal.reason);
  return h(
    'span',
    { class: 'source-refusal', role: 'note' },
    'Did not run (', timeElement(refusal.scheduled_for), '): ', refusal.reason, /[.!?]$/.test(refusal.reason) ? '' : '.',
    aboutKey ? h('span', {}, ' ', externalKeysLink('Fix it in External keys'), '.') : null,
  );
}

function sourceRow(source, act) {
  const selection = source.provider === 'aws'
    ? { aws: { bucket: source.bucket, prefix: source.prefix ?? '', pattern: source.pattern ?? '' } }
    : { dnanexus: { project: source.project, folder: source.folder ?? '/', pattern: source.pattern ?? '' } };
  const { where, pattern } = describeSelection(selection);
  const button = (action, label, extra = '') => {
    const element = h('button', { type: 'button', class: `button button-small ${extra}`, 'aria-label': `${label} ${source.name}` }, label);
    element.addEventListener('click', () => act(source, element, action));
    return element;
  };
  const last = source.last_run
    ? h(
      'span',
      { class: 'status-stack' },
      h('a', { href: `#/samples/jobs/${encodeURIComponent(source.last_run.ingestion)}` }, stateBadge(source.last_run.state)),
      h('span', { class: 'cell-note' }, timeElement(source.last_run.started_at)),
    )
    : h('span', { class: 'muted' }, 'never run');
  const refusal = source.last_refusal ? refusalLine(source.last_refusal) : null;
  return h(
    'tr',
    { dataset: { id: source.id, state: source.state } },
    h(
      'th',
      { scope: 'row' },
      h('span', { class: 'cell-stack' }, source.name, h('code', { class: 'cell-note' }, where), pattern ? h('code', { class: 'cell-note' }, pattern) : null, h('span', { class: 'cell-note' }, '\u2192 ', source.destination), refusal),
    ),
    h(
      'td',
      { 'data-label': 'Schedule' },
      source.schedule
        ? h('span', { class: 'cell-stack' }, h('code', {}, source.schedule), h('span', { class: 'cell-note' }, source.timezone))
        : h('span', { class: 'muted' }, 'on demand'),
    ),
    h('td', { 'data-label': 'Next run' }, source.state === 'paused' ? h('span', { class: 'muted' }, 'paused') : timeElement(source.next_run_at, 'none scheduled')),
    h('td', { 'data-label': 'Last run' }, last),
    h('td', { 'data-label': 'State' }, stateBadge(source.state)),
    h(
      'td',
      { 'data-label': 'Actions' },
      h(
        'div',
        { class: 'row-actions' },
        button('run', 'Run now'),
        source.state === 'paused' ? button('resume', 'Resume') : button('pause', 'Pause'),
        button('delete', 'Delete', 'button-danger'),
      ),
    ),
  );
}

function confirmDelete(source, opener, remove) {
  const formError = h('div', { class: 'notice notice-error', role: 'alert', hidden: true });
  const actions = dialogActions('Cancel', 'Delete source', 'button-danger');
  const form = h('form', { class: 'form', novalidate: true }, formError, actions.element);
  const dialog = openDialog({
    title: `Delete the source \u201c${source.name}\u201d?`,
    description: 'It will not run again. Its imports and the files they stored stay.',
    content: form,
    initialFocus: actions.cancel,
    returnFocus: () => opener,
  });
  actions.cancel.addEventListener('click', () => dialog.close());
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (isBusy(actions.submit)) {
      return;
    }
    setBusy(actions.submit, true, 'Deleting\u2026');
    try {
      await remove();
    } catch (error) {
      setBusy(actions.submit, false);
      formError.textContent = error.message;
      formError.hidden = false;
      return;
    }
    dialog.close();
  });
}

function timeZones() {
  const own = Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
  const all = typeof Intl.supportedValuesOf === 'function' ? Intl.supportedValuesOf('timeZone') : [];
  return { own, all: all.includes(own) ? all : [own, ...all] };
}

/** Saves `job` (the import form's body) as a source, with a name and an optional schedule. */
export function openSaveSource(job, opener, pageNotices) {
  const requestId = newRequestId();
  const formError = h('div', { class: 'notice notice-error', role: 'alert', hidden: true });
  const name = field({
    label: 'Name',
    input: h('input', { id: 'source-name', type: 'text', autocomplete: 'off', spellcheck: 'false' }),
    hint: 'What it is, such as \u201cnightly sequencing runs\u201d.',
  });
  const schedule = field({
    label: 'Schedule (cron, optional)',
    input: h('input', { id: 'source-schedule', type: 'text', autocomplete: 'off', spellcheck: 'false', placeholder: '0 2 * * *' }),
    hint: 'Minute, hour, day of month, month, day of week: \u201c0 2 * * *\u201d is every night at 02:00. Empty: run it only when you ask.',
  });
  const zones = timeZones();
  const timezone = field({
    label: 'Time zone',
    input: h('select', { id: 'source-timezone' }, zones.all.map((zone) => h('option', { value: zone, selected: zone === zones.own }, zone))),
    hint: 'The schedule\u2019s hours are in this zone.',
  });
  const { where, pattern } = describeSelection({ [job.provider]: job });
  const actions = dialogActions('Cancel', 'Save source');
  const form = h(
    'form',
    { class: 'form', novalidate: true },
    formError,
    h('p', { class: 'muted' }, 'Saves ', h('code', {}, where), pattern ? [' matching ', h('code', {}, pattern)] : ' (every file)', ` into ${job.destination ?? app.me.user}.`),
    name.wrapper,
    schedule.wrapper,
    timezone.wrapper,
    actions.element,
  );
  const dialog = openDialog({ title: 'Save as source', description: 'Import this selection again, now or on a schedule.', content: form, returnFocus: () => opener });
  actions.cancel.addEventListener('click', () => dialog.close());
  const fields = { name, schedule, timezone };
  for (const each of Object.values(fields)) {
    each.input.addEventListener('input', () => each.clearError());
  }
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (isBusy(actions.submit)) {
      return;
    }
    formError.hidden = true;
    if (!name.input.value.trim()) {
      name.showError('Enter a name.');
      name.input.focus();
      return;
    }
    const body = { ...job, name: name.input.value.trim() };
    if (schedule.input.value.trim()) {
      body.schedule = schedule.input.value.trim();
      body.timezone = timezone.input.value;
    }
    setBusy(actions.submit, true, 'Saving\u2026');
    try {
      await request('POST', '/v1/sources', { body, requestId });
    } catch (error) {
      setBusy(actions.submit, false);
      const explained = explainRefusal(error, job.provider);
      const target = error.code === 'source_name_taken' ? name : explained.field ? fields[explained.field] : null;
      if (target) {
        target.showError(explained.message);
        target.input.focus();
      } else {
        formError.replaceChildren(explained.message, explained.link ? ' ' : '', explained.link ?? '');
        formError.hidden = false;
      }
      return;
    }
    dialog.close();
    pageNotices.show('success', `Saved the source \u201c${body.name}\u201d. `, h('a', { href: '#/samples/sources' }, 'See your saved sources'), '.');
    announce('The source was saved.');
  });
}
