// Samples › Import: a provider the user has a usable key for, the selection (bucket + prefix +
// regex, or project + folder + regex) and a destination, with a live preview of what the
// selection matches; Start begins the job and opens it; the selection can be saved as a source.

import { newRequestId, request } from './api.js';
import { announce, field, h, isBusy, noticeArea, setBusy } from './dom.js';
import { app } from './state.js';
import { livePreview } from './samples-preview.js';
import { openSaveSource } from './samples-sources.js';
import {
  explainRefusal, externalKeysLink, loadExternalKeys, PROVIDER_NAMES, samplesGate, samplesHeader,
} from './samples-shared.js';

export function importPage() {
  const gate = samplesGate();
  if (gate) {
    return gate;
  }
  const notices = noticeArea();
  const body = h('div', { class: 'import-layout' }, h('p', { class: 'muted' }, 'Loading your external keys\u2026'));
  const page = h('section', { class: 'page' }, samplesHeader('import'), notices.element, body);
  loadExternalKeys().then(
    (keys) => body.replaceChildren(...importForm(keys.usable, notices)),
    (error) => notices.show('error', `Could not read your external keys: ${error.message}`),
  );
  return page;
}

function textInput(id, props = {}) {
  return h('input', { id, name: id.replace(/^import-/, ''), type: 'text', autocomplete: 'off', spellcheck: 'false', ...props });
}

function importForm(usable, notices) {
  const offered = Object.keys(PROVIDER_NAMES).filter((provider) => usable.has(provider));
  if (offered.length === 0) {
    return [
      h(
        'div',
        { class: 'notice notice-info panel', id: 'no-usable-key' },
        h('h2', {}, 'Add an external key first'),
        h(
          'p',
          {},
          'Imports pull files with your own AWS or DNAnexus key, and you have no usable one (none stored, or each has expired or was revoked). ',
          externalKeysLink('Add one in External keys'),
          ', then come back here.',
        ),
      ),
    ];
  }
  const missing = Object.keys(PROVIDER_NAMES).filter((provider) => !usable.has(provider));
  const provider = field({
    label: 'Provider',
    input: h(
      'select',
      { id: 'import-provider', name: 'provider' },
      offered.map((value) => h('option', { value }, PROVIDER_NAMES[value])),
    ),
    hint: missing.length
      ? `Only providers you have a usable key for are offered: you have none for ${missing.map((p) => PROVIDER_NAMES[p]).join(' or ')}.`
      : null,
  });
  if (missing.length) {
    provider.wrapper.append(h('p', { class: 'field-hint' }, externalKeysLink(`Add a ${missing.map((p) => PROVIDER_NAMES[p]).join(' or ')} key`), '.'));
  }
  const fields = {
    bucket: field({ label: 'Bucket', input: textInput('import-bucket', { placeholder: 'lab-sequencing' }) }),
    prefix: field({ label: 'Prefix', input: textInput('import-prefix', { placeholder: 'runs/2026-12/' }), hint: 'Only keys starting with this; empty for the whole bucket.' }),
    project: field({ label: 'Project', input: textInput('import-project', { placeholder: 'project-\u2026 or its exact name' }) }),
    folder: field({ label: 'Folder', input: textInput('import-folder', { placeholder: '/quant' }), hint: 'Starts with /; empty for the whole project.' }),
    pattern: field({
      label: 'Pattern (regular expression)',
      input: textInput('import-pattern', { placeholder: '\\.fastq\\.gz$' }),
      hint: 'Matched anywhere in the object key or file path, such as \\.csv$; empty for every file.',
    }),
    destination: field({
      label: 'Destination',
      input: textInput('import-destination', { value: app.me.user }),
      hint: `A folder of the sample store: your own (${app.me.user}) or one under it, such as ${app.me.user}/run-1.`,
    }),
  };
  const awsFields = h('fieldset', { class: 'provider-fields' }, h('legend', {}, 'Where in S3'), h('div', { class: 'field-row' }, fields.bucket.wrapper, fields.prefix.wrapper));
  const dxFields = h('fieldset', { class: 'provider-fields' }, h('legend', {}, 'Where in DNAnexus'), h('div', { class: 'field-row' }, fields.project.wrapper, fields.folder.wrapper));
  const formError = h('div', { class: 'notice notice-error', role: 'alert', hidden: true });
  const save = h('button', { type: 'button', class: 'button' }, 'Save as source\u2026');
  const start = h('button', { type: 'submit', class: 'button button-primary' }, 'Start import');
  const form = h(
    'form',
    { class: 'form panel import-form', novalidate: true, 'aria-label': 'Start an import' },
    formError,
    provider.wrapper,
    awsFields,
    dxFields,
    fields.pattern.wrapper,
    fields.destination.wrapper,
    h('div', { class: 'form-actions' }, save, start),
  );
  let marked = null;
  const preview = livePreview({
    onRefusal: (explained) => {
      marked?.clearError();
      marked = explained?.field ? fields[explained.field] : null;
      marked?.showError(explained.message);
    },
  });

  const chosen = () => provider.input.value;
  const value = (name) => fields[name].input.value.trim();
  /** The job's body as the form stands, or `{missing}`: the field still to fill in. */
  const selection = () => {
    const job = { provider: chosen() };
    if (chosen() === 'aws') {
      if (!value('bucket')) return { missing: fields.bucket, why: 'Enter a bucket to see what it matches.' };
      job.bucket = value('bucket');
      if (value('prefix')) job.prefix = value('prefix');
    } else {
      if (!value('project')) return { missing: fields.project, why: 'Enter a project to see what it matches.' };
      job.project = value('project');
      if (value('folder')) job.folder = value('folder');
    }
    if (fields.pattern.input.value !== '') job.pattern = fields.pattern.input.value;
    return { job };
  };
  const jobBody = () => {
    const { job, missing } = selection();
    if (missing) return { missing };
    if (value('destination')) job.destination = value('destination');
    return { job };
  };
  const refresh = () => {
    awsFields.hidden = chosen() !== 'aws';
    dxFields.hidden = chosen() !== 'dnanexus';
    const { job, why } = selection();
    preview.update(job ?? null, chosen(), why);
  };

  let requestId = newRequestId();
  let requestBody = null;
  provider.input.addEventListener('change', refresh);
  for (const [name, each] of Object.entries(fields)) {
    each.input.addEventListener('input', () => {
      each.clearError();
      formError.hidden = true;
      if (name !== 'destination') refresh();
    });
  }
  const showRefusal = (error) => {
    const explained = explainRefusal(error, chosen());
    const target = explained.field ? fields[explained.field] : null;
    if (target) {
      target.showError(explained.message);
      target.input.focus();
      return;
    }
    formError.replaceChildren(explained.message, explained.link ? ' ' : '', explained.link ?? '');
    formError.hidden = false;
    start.focus();
  };
  const readBody = () => {
    const { job, missing } = jobBody();
    if (missing) {
      missing.showError(`Enter a ${missing === fields.bucket ? 'bucket' : 'project'}.`);
      missing.input.focus();
      return null;
    }
    return job;
  };
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (isBusy(start)) return;
    const job = readBody();
    if (!job) return;
    // One Idempotency-Key per body: a double click starts one job, a changed form a new one.
    const text = JSON.stringify(job);
    if (text !== requestBody) {
      requestBody = text;
      requestId = newRequestId();
    }
    setBusy(start, true, 'Starting\u2026');
    let started;
    try {
      started = await request('POST', '/v1/ingestions', { body: job, requestId });
    } catch (error) {
      setBusy(start, false);
      showRefusal(error);
      return;
    }
    preview.stop();
    announce('The import has started.');
    location.hash = `#/samples/jobs/${encodeURIComponent(started.id)}`;
  });
  save.addEventListener('click', () => {
    const job = readBody();
    if (job) openSaveSource(job, save, notices);
  });
  refresh();
  return [form, preview.element];
}
