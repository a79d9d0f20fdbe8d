// The live preview of an import's selection (decision 0032): what the bucket + prefix + regex
// or project + folder + regex matches, read again as the user types.
//
// Guarantees, and how they are kept:
// - One preview per pause in typing: a call waits 400 ms after the last change.
// - A stale answer is never shown: each change aborts the request in flight (AbortController)
//   and bumps a sequence number; an answer whose number is not the latest is dropped, even one
//   that arrived before its abort took effect.
// - Nothing is fetched or recorded: `POST /v1/ingestions/preview` is a read (decision 0028).

import { request } from './api.js';
import { h } from './dom.js';
import { explainRefusal, formatBytes } from './samples-shared.js';

const DEBOUNCE_MS = 400;
const PAGE_SIZE = 10;

/**
 * The preview panel. `update(body, provider)` previews a job body after the pause, or with a
 * null body shows `why` there is nothing to preview; `onRefusal(explained)` lets the form mark
 * the field a refusal names.
 */
export function livePreview({ onRefusal }) {
  const status = h('div', { class: 'preview-status', id: 'preview-status' });
  const list = h('ul', { class: 'preview-files', 'aria-label': 'First matching files' });
  const more = h('p', { class: 'preview-more muted' });
  const element = h(
    'section',
    { class: 'panel preview', id: 'preview', 'aria-labelledby': 'preview-title', dataset: { state: 'idle' } },
    h('h2', { id: 'preview-title' }, 'What this selection matches'),
    h('div', { 'aria-live': 'polite' }, status),
    list,
    more,
  );
  let timer = null;
  let controller = null;
  let sequence = 0;

  const show = (state, ...content) => {
    element.dataset.state = state;
    element.setAttribute('aria-busy', String(state === 'waiting'));
    status.replaceChildren(...content.filter(Boolean));
  };

  const run = async (body, provider, mine) => {
    controller = new AbortController();
    let answer;
    try {
      answer = await request('POST', `/v1/ingestions/preview?page_size=${PAGE_SIZE}`, { body, signal: controller.signal });
    } catch (error) {
      if (mine !== sequence || error.name === 'AbortError') {
        return;
      }
      const explained = explainRefusal(error, provider);
      list.replaceChildren();
      more.textContent = '';
      show('error', h('p', { class: 'notice notice-error', role: 'alert' }, explained.message, explained.link ? ' ' : null, explained.link));
      onRefusal(explained);
      return;
    }
    if (mine !== sequence) {
      return;
    }
    onRefusal(null);
    draw(answer);
  };

  const draw = (answer) => {
    list.replaceChildren(
      ...answer.files.map((file) =>
        h('li', {}, h('code', { class: 'preview-path' }, file.path), h('span', { class: 'preview-size' }, formatBytes(file.size))),
      ),
    );
    const count = `${answer.matched} ${answer.matched === 1 ? 'file' : 'files'}`;
    if (answer.matched === 0) {
      more.textContent = '';
      show(
        answer.complete ? 'empty' : 'ready',
        h(
          'p',
          { class: 'notice notice-warning' },
          answer.complete
            ? `Nothing matched: none of the ${answer.scanned} entries listed there matches the selection. Check the prefix or folder and the pattern.`
            : `Nothing matched in the first ${answer.scanned} entries. ${answer.note ?? ''}`,
        ),
      );
      return;
    }
    const shown = answer.files.length;
    more.textContent = answer.matched > shown || !answer.complete
      ? `The first ${shown} are shown${answer.complete ? `, of ${answer.matched}` : ''}.`
      : '';
    show(
      'ready',
      h(
        'p',
        { class: 'preview-summary' },
        h('strong', {}, answer.complete ? count : `More than ${count}`),
        `, ${answer.complete ? '' : 'at least '}${formatBytes(answer.total_bytes)} in total`,
      ),
      answer.complete ? null : h('p', { class: 'preview-note muted' }, answer.note ?? `The listing stopped after ${answer.limit} entries.`),
    );
  };

  return {
    element,
    update(body, provider, why) {
      clearTimeout(timer);
      sequence += 1;
      controller?.abort();
      controller = null;
      if (!body) {
        list.replaceChildren();
        more.textContent = '';
        show('idle', h('p', { class: 'muted' }, why));
        return;
      }
      const mine = sequence;
      show('waiting', h('p', { class: 'muted' }, 'Looking\u2026'));
      timer = setTimeout(() => run(body, provider, mine), DEBOUNCE_MS);
    },
    stop() {
      clearTimeout(timer);
      sequence += 1;
      controller?.abort();
    },
  };
}
