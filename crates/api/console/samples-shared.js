// What the Samples pages share: their header and tabs, the page for users without the import
// permission, the user's usable external keys, how a job's selection, sizes, rates and states
// read, and the API's refusals of a selection in clear words.

import { request } from './api.js';
import { h } from './dom.js';
import { app, canImportSamples, IMPORT_SAMPLES, pageHeading } from './state.js';

export const PROVIDER_NAMES = { aws: 'AWS S3', dnanexus: 'DNAnexus' };
/** States of a job that has not ended. */
export const RUNNING_STATES = new Set(['queued', 'listing', 'fetching']);

export function samplesHeader(active) {
  return [
    pageHeading('Samples'),
    h(
      'p',
      { class: 'lead' },
      'Import sample files from AWS S3 and DNAnexus with your external keys, watch the imports run, and see where every stored file came from.',
    ),
    samplesTabs(active),
  ];
}

/** The Samples pages' tabs: Import, Jobs, Saved sources. */
export function samplesTabs(active) {
  const tab = (id, label, href) =>
    h(
      'li',
      {},
      h('a', { href, class: id === active ? 'tab tab-active' : 'tab', 'aria-current': id === active ? 'page' : null }, label),
    );
  return h(
    'nav',
    { class: 'tabs', 'aria-label': 'Samples pages' },
    h(
      'ul',
      {},
      tab('import', 'Import', '#/samples/import'),
      tab('jobs', 'Jobs', '#/samples/jobs'),
      tab('sources', 'Saved sources', '#/samples/sources'),
    ),
  );
}

/** The Samples pages' answer to a user whose roles do not grant the import permission. */
export function samplesGate() {
  if (canImportSamples()) {
    return null;
  }
  const roles = app.me.roles?.length ? app.me.roles.join(', ') : 'none';
  return h(
    'section',
    { class: 'page' },
    pageHeading('Samples'),
    h(
      'div',
      { class: 'notice notice-info panel', id: 'no-import-permission' },
      h('h2', {}, 'You cannot import samples'),
      h(
        'p',
        {},
        'Importing samples needs the permission ',
        h('code', {}, IMPORT_SAMPLES),
        `, and your roles (${roles}) do not include it. A user with `,
        h('code', {}, 'manage_organization_users'),
        ', such as an admin, can grant you a role that does, such as member.',
      ),
    ),
  );
}

/** The user's external keys: `{usable: Set of providers with an active key, labels: id → label}`. */
export async function loadExternalKeys() {
  const { keys } = await request('GET', '/v1/external-keys');
  const usable = new Set(keys.filter((key) => key.status === 'active').map((key) => key.provider));
  return { usable, labels: new Map(keys.map((key) => [key.id, key.label])) };
}

export function externalKeysLink(text = 'External keys') {
  return h('a', { href: '#/api-keys/external' }, text);
}

/** `s3://lab/runs/` or `project-…:/quant`, and the pattern when there is one. */
export function describeSelection(selection) {
  const [provider, fields] = Object.entries(selection ?? {})[0] ?? [];
  if (!fields) {
    return { where: '\u2014', pattern: null };
  }
  const where = provider === 'aws' ? `s3://${fields.bucket}/${fields.prefix ?? ''}` : `${fields.project}:${fields.folder || '/'}`;
  return { where, pattern: fields.pattern && fields.pattern !== '.*' ? fields.pattern : null };
}

const sizeFormat = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
const UNITS = ['bytes', 'kB', 'MB', 'GB', 'TB', 'PB'];

/** "1.5 MB" (powers of 1000, as S3 and DNAnexus show sizes). */
export function formatBytes(bytes) {
  if (bytes === null || bytes === undefined) {
    return '\u2014';
  }
  let value = Number(bytes);
  let unit = 0;
  while (value >= 1000 && unit < UNITS.length - 1) {
    value /= 1000;
    unit += 1;
  }
  if (unit === 0) {
    return `${value} ${value === 1 ? 'byte' : 'bytes'}`;
  }
  return `${sizeFormat.format(value)} ${UNITS[unit]}`;
}

export function formatRate(bytesPerSecond) {
  return bytesPerSecond ? `${formatBytes(bytesPerSecond)}/s` : '\u2014';
}

/** Time left for a running job at its average rate so far, or null when it cannot be told. */
export function estimateLeft(job) {
  if (!RUNNING_STATES.has(job.state) || !job.bytes_per_second || job.bytes_selected === null || job.bytes_selected === undefined) {
    return null;
  }
  const left = job.bytes_selected - (job.bytes_skipped ?? 0) - (job.bytes_transferred ?? 0);
  if (left <= 0) {
    return 'almost done';
  }
  const seconds = Math.ceil(left / job.bytes_per_second);
  if (seconds < 60) {
    return `${seconds} s`;
  }
  if (seconds < 3600) {
    return `${Math.round(seconds / 60)} min`;
  }
  return `${Math.floor(seconds / 3600)} h ${Math.round((seconds % 3600) / 60)} min`;
}

const STATES = {
  queued: ['Queued', 'badge badge-running'],
  listing: ['Listing', 'badge badge-running'],
  fetching: ['Fetching', 'badge badge-running'],
  completed: ['Completed', 'badge badge-active'],
  failed: ['Failed', 'badge badge-expired'],
  cancelled: ['Cancelled', 'badge'],
  verified: ['Verified', 'badge badge-active'],
  active: ['Active', 'badge badge-active'],
  paused: ['Paused', 'badge'],
};

export function stateBadge(state) {
  const [label, className] = STATES[state] ?? [state, 'badge'];
  return h('span', { class: className }, label);
}

/** `/v1/ingestions/{id}/files/{path}`, each level of the path escaped. */
export function filePath(jobId, path) {
  return `/v1/ingestions/${encodeURIComponent(jobId)}/files/${path.split('/').map(encodeURIComponent).join('/')}`;
}

const SELECTION_FIELDS = ['bucket', 'prefix', 'project', 'folder', 'pattern', 'destination', 'name', 'schedule', 'timezone'];

/**
 * The API's refusal of a selection (a preview, a job, a saved source) in clear words:
 * `{field, message, link}` — the field it is about (the error's `field`, which every
 * `invalid_selection` carries; the `pattern: …` the message starts with only as a fallback), a
 * sentence, and a link to the external keys when a key is the problem.
 */
export function explainRefusal(error, provider) {
  const name = PROVIDER_NAMES[provider] ?? 'this provider';
  const named = error.field ?? SELECTION_FIELDS.find((each) => error.message.startsWith(`${each}:`)) ?? null;
  switch (error.code) {
    case 'no_external_key':
      return {
        field: null,
        message: `You have no usable ${name} key, so nothing can be listed or fetched there. Add one, then come back.`,
        link: externalKeysLink('Add a key in External keys'),
      };
    case 'session_expired':
      return {
        field: null,
        message: `Your ${name} key holds temporary credentials that have expired. Rotate it with new ones.`,
        link: externalKeysLink('Rotate it in External keys'),
      };
    case 'key_rejected':
      return {
        field: null,
        message: `${name} rejected your stored key: ${error.message}. Test it, and rotate it if it is wrong.`,
        link: externalKeysLink('Test or rotate it in External keys'),
      };
    case 'provider_refused':
      return {
        field: provider === 'aws' ? 'bucket' : 'project',
        message: `${name} refused to list this for your key: ${error.message}`,
        link: null,
      };
    case 'not_found_at_provider':
      return {
        field: provider === 'aws' ? 'bucket' : 'project',
        message: provider === 'aws'
          ? `There is no such bucket, or not in your key\u2019s account: ${error.message}`
          : `There is no such project, or your token cannot see it: ${error.message}`,
        link: null,
      };
    case 'provider_unavailable':
      return { field: null, message: `${name} could not be reached or failed: ${error.message}. Try again in a moment.`, link: null };
    default: {
      // Under its field, "pattern: not a valid …" reads "Not a valid …".
      const text = named && error.message.startsWith(`${named}:`) ? error.message.slice(named.length + 1).trim() : error.message;
      return { field: named, message: text.charAt(0).toUpperCase() + text.slice(1), link: null };
    }
  }
}
