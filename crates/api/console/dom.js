// Small DOM helpers: elements are built from text nodes, never from HTML strings, so nothing the
// API returns can become markup. Also dates (always with their time zone), announcements,
// accessible modal dialogs, icons, busy buttons and notice areas.

/**
 * Builds an element. `props`: `class`, `text`, `on<event>` listeners, `dataset`, and attributes
 * (true: present, false/null/undefined: absent). Children: nodes, strings, or arrays of them.
 */
export function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) {
      continue;
    }
    if (name === 'class') {
      element.className = value;
    } else if (name === 'text') {
      element.textContent = value;
    } else if (name === 'dataset') {
      Object.assign(element.dataset, value);
    } else if (name.startsWith('on') && typeof value === 'function') {
      element.addEventListener(name.slice(2).toLowerCase(), value);
    } else if (value === true) {
      element.setAttribute(name, '');
    } else {
      element.setAttribute(name, String(value));
    }
  }
  appendAll(element, children);
  return element;
}

function appendAll(parent, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) {
      continue;
    }
    if (Array.isArray(child)) {
      appendAll(parent, child);
    } else if (child instanceof Node) {
      parent.append(child);
    } else {
      parent.append(document.createTextNode(String(child)));
    }
  }
}

let uniqueCounter = 0;

/** A document-unique id with a readable prefix. */
export function uniqueId(prefix) {
  uniqueCounter += 1;
  return `${prefix}-${uniqueCounter}`;
}

// Times are shown in the browser's time zone, always with that zone's name ("17:40 UTC",
// "18:40 GMT+1"), so a time read off the screen is never ambiguous. The date and the clock are
// separate spans: a narrow column wraps between them instead of growing sideways.
const dateFormat = new Intl.DateTimeFormat(undefined, { year: 'numeric', month: 'short', day: 'numeric' });
const clockFormat = new Intl.DateTimeFormat(undefined, {
  hour: '2-digit',
  minute: '2-digit',
  hourCycle: 'h23',
  timeZoneName: 'short',
});

/** "Dec 5, 2026, 17:40 UTC": a date and time with its time zone, as text. */
export function formatTime(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) {
    return String(iso);
  }
  return `${dateFormat.format(date)}, ${clockFormat.format(date)}`;
}

/**
 * A `<time>` element for an RFC 3339 timestamp (date, then clock with the time zone; the exact
 * UTC instant in its title), or `empty` when there is none.
 */
export function timeElement(iso, empty = '\u2014') {
  if (!iso) {
    return h('span', { class: 'muted' }, empty);
  }
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) {
    return h('span', {}, iso);
  }
  return h(
    'time',
    { datetime: iso, title: date.toISOString() },
    h('span', { class: 'time-date' }, `${dateFormat.format(date)},`),
    ' ',
    h('span', { class: 'time-clock' }, clockFormat.format(date)),
  );
}

/** Says `message` to screen readers through the page's polite live region. */
export function announce(message) {
  const region = document.getElementById('announcer');
  if (!region) {
    return;
  }
  region.textContent = '';
  // A change after a tick is announced even when the text repeats.
  setTimeout(() => {
    region.textContent = message;
  }, 50);
}

const FOCUSABLE = [
  'a[href]',
  'button:not([disabled])',
  'input:not([disabled]):not([type="hidden"])',
  'select:not([disabled])',
  'textarea:not([disabled])',
  '[tabindex]:not([tabindex="-1"])',
].join(',');

/** The elements of `root` that Tab reaches, in order, skipping hidden ones. */
export function focusableIn(root) {
  return Array.from(root.querySelectorAll(FOCUSABLE)).filter(
    (element) => !element.closest('[hidden]') && element.getClientRects().length > 0,
  );
}

/**
 * Opens a modal dialog. Focus moves into it (to `initialFocus` or its first field) and is kept
 * inside it (Tab and Shift+Tab wrap); Escape or `close()` closes it and gives focus back to the
 * element that had it before (or to `returnFocus()` when that element is gone or disabled).
 * Returns `{dialog, body, close}`.
 */
export function openDialog({ title, description, content, initialFocus, returnFocus, onClose, size }) {
  const opener = document.activeElement;
  const titleId = uniqueId('dialog-title');
  const descriptionId = description ? uniqueId('dialog-description') : null;
  const body = h('div', { class: 'dialog-body' });
  const dialog = h(
    'dialog',
    {
      class: size === 'wide' ? 'dialog dialog-wide' : 'dialog',
      'aria-labelledby': titleId,
      'aria-describedby': descriptionId,
      'aria-modal': 'true',
    },
    h('h2', { id: titleId, class: 'dialog-title' }, title),
    description ? h('p', { id: descriptionId, class: 'dialog-description' }, description) : null,
    body,
  );
  if (content) {
    body.append(content);
  }
  let closed = false;
  const close = (result) => {
    if (closed) {
      return;
    }
    closed = true;
    if (dialog.open) {
      dialog.close();
    }
    dialog.remove();
    const fallback = typeof returnFocus === 'function' ? returnFocus() : null;
    const target = opener instanceof HTMLElement && opener.isConnected && !opener.disabled ? opener : fallback;
    if (target instanceof HTMLElement) {
      target.focus();
    }
    if (onClose) {
      onClose(result);
    }
  };
  dialog.addEventListener('cancel', (event) => {
    // Escape: close through `close` so that focus goes back where it came from.
    event.preventDefault();
    close();
  });
  dialog.addEventListener('keydown', (event) => {
    if (event.key === 'Escape') {
      event.preventDefault();
      close();
      return;
    }
    if (event.key !== 'Tab') {
      return;
    }
    const focusable = focusableIn(dialog);
    if (focusable.length === 0) {
      event.preventDefault();
      return;
    }
    const first = focusable[0];
    const last = focusable[focusable.length - 1];
    if (event.shiftKey && (document.activeElement === first || !dialog.contains(document.activeElement))) {
      event.preventDefault();
      last.focus();
    } else if (!event.shiftKey && (document.activeElement === last || !dialog.contains(document.activeElement))) {
      event.preventDefault();
      first.focus();
    }
  });
  document.body.append(dialog);
  dialog.showModal();
  const target = (typeof initialFocus === 'function' ? initialFocus() : initialFocus) ?? focusableIn(dialog)[0];
  if (target instanceof HTMLElement) {
    target.focus();
  }
  return { dialog, body, close };
}

/**
 * A labelled form field: `{wrapper, input, showError(message), clearError()}`. The error is tied
 * to the input with aria-describedby and aria-invalid.
 */
export function field({ label, input, hint }) {
  const id = input.id || uniqueId('field');
  input.id = id;
  const hintId = hint ? `${id}-hint` : null;
  const errorId = `${id}-error`;
  const error = h('p', { class: 'field-error', id: errorId, hidden: true });
  const describedBy = () => [hintId, error.hidden ? null : errorId].filter(Boolean).join(' ');
  const wrapper = h(
    'div',
    { class: 'field' },
    h('label', { for: id }, label),
    hint ? h('p', { class: 'field-hint', id: hintId }, hint) : null,
    input,
    error,
  );
  const refresh = () => {
    const value = describedBy();
    if (value) {
      input.setAttribute('aria-describedby', value);
    } else {
      input.removeAttribute('aria-describedby');
    }
  };
  refresh();
  return {
    wrapper,
    input,
    showError(message) {
      error.textContent = message;
      error.hidden = false;
      input.setAttribute('aria-invalid', 'true');
      refresh();
    },
    clearError() {
      error.textContent = '';
      error.hidden = true;
      input.removeAttribute('aria-invalid');
      refresh();
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Icons, busy buttons, notice areas and dialog buttons, shared by the pages and the grid.

const ICON_PATHS = {
  plus: ['M12 5v14', 'M5 12h14'],
  trash: ['M4 7h16', 'M10 11v6', 'M14 11v6', 'M6 7l1 13h10l1-13', 'M9 7V4h6v3'],
  copy: ['M9 9h11v11H9z', 'M5 15H4V4h11v1'],
  check: ['M5 13l4 4L19 7'],
  plug: ['M9 2v6', 'M15 2v6', 'M6 8h12v3a6 6 0 0 1-12 0z', 'M12 17v5'],
  roll: ['M20 12a8 8 0 1 1-2.34-5.66', 'M20 4v5h-5'],
};

export function icon(name) {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('class', 'icon');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('focusable', 'false');
  for (const d of ICON_PATHS[name]) {
    const path = document.createElementNS(ns, 'path');
    path.setAttribute('d', d);
    svg.append(path);
  }
  return svg;
}

/** What a busy button showed before, to put back when it is done. */
const idleContent = new WeakMap();

export function isBusy(button) {
  return idleContent.has(button);
}

// Busy buttons stay focusable (aria-disabled, not disabled) so focus is not lost while waiting.
export function setBusy(button, busy, label) {
  if (busy && !isBusy(button)) {
    idleContent.set(button, Array.from(button.childNodes));
    button.setAttribute('aria-disabled', 'true');
    button.setAttribute('aria-busy', 'true');
    if (label) {
      button.textContent = label;
    }
  } else if (!busy && isBusy(button)) {
    button.replaceChildren(...idleContent.get(button));
    idleContent.delete(button);
    button.removeAttribute('aria-disabled');
    button.removeAttribute('aria-busy');
  }
}

/** A notice area for a page: `show(kind, ...content)` replaces what it shows. */
export function noticeArea() {
  const element = h('div', { class: 'notices' });
  return {
    element,
    show(kind, ...content) {
      const notice = h(
        'div',
        { class: `notice notice-${kind}`, role: kind === 'error' ? 'alert' : 'status' },
        ...content,
      );
      element.replaceChildren(notice);
      return notice;
    },
    clear() {
      element.replaceChildren();
    },
  };
}

/** The Cancel and submit buttons at the foot of a dialog's form. */
export function dialogActions(cancelLabel, submitLabel, submitClass = 'button-primary') {
  const cancel = h('button', { type: 'button', class: 'button' }, cancelLabel);
  const submit = h('button', { type: 'submit', class: `button ${submitClass}` }, submitLabel);
  return { cancel, submit, element: h('div', { class: 'dialog-actions' }, cancel, submit) };
}

/** A copy button for `what`; without a clipboard it selects the text so that Ctrl+C copies it. */
export function copyButton(what, text, element) {
  const button = h(
    'button',
    { type: 'button', class: 'icon-button copy-button', 'aria-label': `Copy the ${what}`, title: `Copy ${what}` },
    icon('copy'),
  );
  button.addEventListener('click', async () => {
    let copied = false;
    try {
      await navigator.clipboard.writeText(text());
      copied = true;
    } catch {
      const range = document.createRange();
      range.selectNodeContents(element);
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
    }
    button.classList.toggle('copied', copied);
    button.replaceChildren(icon(copied ? 'check' : 'copy'));
    announce(copied ? `The ${what} was copied to the clipboard.` : `The ${what} is selected: press Ctrl+C (or \u2318C) to copy it.`);
  });
  return button;
}
