// The key grid both key pages use: a table of keys with checkboxes, Create and Delete, bulk
// selection, notices, and (for internal keys) search, a status filter and sorting.
//
// Guarantees, and how they are kept:
// - It is never wider than the page: the table has a fixed layout (column widths in app.css, text
//   wraps inside its cell), and below 72rem of room it is a list of cards (a container query).
//   tests/console/e2e.mjs checks this at 1280 and 390 px after every change to a grid.
// - Delete acts only on keys the user can see: what the search or the filter hides is unselected
//   on every draw.
// - Nothing the API returns becomes markup: cells are built with `h` (text nodes only).

import { announce, dialogActions, h, icon, isBusy, noticeArea, openDialog, setBusy } from './dom.js';

/** `key_3hQ9kZ…`: the id's prefix and six characters, enough to tell two keys apart at a glance. */
export function shortId(id) {
  const prefixEnd = id.indexOf('_') + 1;
  return id.length - prefixEnd > 8 ? `${id.slice(0, prefixEnd + 6)}\u2026` : id;
}

/**
 * The grid both key pages use: a checkbox column, a toolbar with Create and Delete, bulk
 * selection, and a notice area. `columns`: `[{label, cell(item), rowHeader?, width?, sort?}]`,
 * where `width` names a column width class of app.css and `sort` (`{key, value(item), compare?}`)
 * makes the column sortable. `view` (optional) adds search, a filter and sorting:
 * `{search: {label, text(item)}, filter: {label, options: [{value, label, test(item)}]},
 * sorts: [{key, direction, label}], initial: {key, direction}}`. `createNeedsList` keeps Create
 * disabled until the list is in (the page decides from it, in `afterDraw`, through
 * `blockCreate`, whether Create may be offered).
 */
/**
 * A table of `columns` (`[label, width class]`) with a visually hidden caption, for pages that
 * draw their own rows (no selection, sorting or search: see `keyGrid` for those). `body` starts
 * with a "Loading…" row when `loading`; `emptyRow(...children)` is a row across every column.
 */
export function plainTable({ id, className = 'grid', caption, columns, loading = true }) {
  const emptyRow = (...children) => h('tr', {}, h('td', { class: 'empty', colspan: String(columns.length) }, ...children));
  const body = loading ? h('tbody', {}, emptyRow('Loading\u2026')) : h('tbody');
  const table = h(
    'table',
    { class: className, id },
    h('caption', { class: 'visually-hidden' }, caption),
    h('colgroup', {}, columns.map(([, width]) => h('col', { class: width }))),
    h('thead', {}, h('tr', {}, columns.map(([label]) => h('th', { scope: 'col' }, label)))),
    body,
  );
  return { table, body, emptyRow };
}

export function keyGrid({ id, caption, noun, columns, emptyText, load, onCreate, onDelete, itemName, view, afterDraw, createNeedsList = false }) {
  let items = [];
  let loaded = false;
  let createBlocked = null;
  const selected = new Set();
  const notices = noticeArea();
  const selection = h('p', { class: 'toolbar-status', 'aria-live': 'polite' });
  const createNoteId = `${id}-create-note`;
  const createNote = h('p', { class: 'toolbar-note', id: createNoteId, hidden: true });
  const createButton = h(
    'button',
    { type: 'button', class: 'button button-primary', disabled: createNeedsList },
    icon('plus'),
    'Create',
  );
  const deleteButton = h('button', { type: 'button', class: 'button button-danger', disabled: true }, icon('trash'), 'Delete');
  const selectAll = h('input', { type: 'checkbox', 'aria-label': `Select all ${noun}s shown` });
  const body = h('tbody');
  const state = {
    query: '',
    filter: 'all',
    sort: view?.initial ?? null,
  };
  const sortHeaders = [];
  const headerCells = columns.map((column) => {
    if (!column.sort || !view) {
      return h('th', { scope: 'col', class: column.width }, column.label);
    }
    const indicator = h('span', { class: 'sort-indicator', 'aria-hidden': 'true' });
    const button = h(
      'button',
      { type: 'button', class: 'sort-button', dataset: { sort: column.sort.key } },
      column.label,
      indicator,
    );
    const th = h('th', { scope: 'col', class: column.width }, button);
    button.addEventListener('click', () => {
      const same = state.sort?.key === column.sort.key;
      const direction = same
        ? state.sort.direction === 'ascending' ? 'descending' : 'ascending'
        : column.sort.firstDirection ?? 'ascending';
      setSort({ key: column.sort.key, direction });
    });
    sortHeaders.push({ key: column.sort.key, th, indicator });
    return th;
  });
  const table = h(
    'table',
    { class: 'grid', id },
    h('caption', { class: 'visually-hidden' }, caption),
    h('colgroup', {}, h('col', { class: 'col-select' }), columns.map((column) => h('col', { class: column.width }))),
    h('thead', {}, h('tr', {}, h('th', { scope: 'col', class: 'select-cell' }, selectAll), headerCells)),
    body,
  );

  // Search, filter and sort controls (internal keys). The sort select is for card mode, where
  // there are no column headers to click; it and the headers share one state.
  const viewControls = view ? buildViewControls() : null;

  function buildViewControls() {
    const controls = [];
    let searchInput = null;
    let filterSelect = null;
    let sortSelect = null;
    if (view.search) {
      searchInput = h('input', {
        type: 'search',
        id: `${id}-search`,
        autocomplete: 'off',
        spellcheck: 'false',
      });
      searchInput.addEventListener('input', () => {
        state.query = searchInput.value;
        grid.draw();
      });
      controls.push(h('div', { class: 'view-field view-search' }, h('label', { for: searchInput.id }, view.search.label), searchInput));
    }
    if (view.filter) {
      filterSelect = h(
        'select',
        { id: `${id}-filter` },
        view.filter.options.map((option) => h('option', { value: option.value }, option.label)),
      );
      filterSelect.addEventListener('change', () => {
        state.filter = filterSelect.value;
        grid.draw();
      });
      controls.push(h('div', { class: 'view-field' }, h('label', { for: filterSelect.id }, view.filter.label), filterSelect));
    }
    if (view.sorts) {
      sortSelect = h(
        'select',
        { id: `${id}-sort` },
        view.sorts.map((sort) => h('option', { value: `${sort.key}:${sort.direction}` }, sort.label)),
      );
      sortSelect.addEventListener('change', () => {
        const [key, direction] = sortSelect.value.split(':');
        setSort({ key, direction });
      });
      controls.push(h('div', { class: 'view-field view-sort' }, h('label', { for: sortSelect.id }, 'Sort by'), sortSelect));
    }
    return {
      element: h('div', { class: 'grid-view', role: 'search', 'aria-label': `${caption}: search and filter` }, controls),
      reset() {
        state.query = '';
        state.filter = 'all';
        if (searchInput) {
          searchInput.value = '';
        }
        if (filterSelect) {
          filterSelect.value = 'all';
        }
      },
      showSort() {
        if (sortSelect && state.sort) {
          sortSelect.value = `${state.sort.key}:${state.sort.direction}`;
        }
      },
      focusSearch() {
        (searchInput ?? filterSelect)?.focus();
      },
    };
  }

  function setSort(sort) {
    state.sort = sort;
    grid.draw();
  }

  /** The items the search and the filter let through, in the chosen order. */
  function visibleItems() {
    if (!view) {
      return items;
    }
    const query = state.query.trim().toLocaleLowerCase();
    const filter = view.filter?.options.find((option) => option.value === state.filter);
    const shown = items.filter(
      (item) =>
        (!query || view.search.text(item).toLocaleLowerCase().includes(query)) && (!filter?.test || filter.test(item)),
    );
    const column = state.sort && columns.find((each) => each.sort?.key === state.sort.key);
    if (column) {
      const { value, compare = (a, b) => (a < b ? -1 : a > b ? 1 : 0) } = column.sort;
      const sign = state.sort.direction === 'descending' ? -1 : 1;
      // Ties keep the API's order (newest first): Array.prototype.sort is stable.
      shown.sort((a, b) => sign * compare(value(a), value(b)));
    }
    return shown;
  }

  /** The checkbox's name: the item's name, and its short id when another item has that name. */
  function selectLabel(item) {
    const name = itemName(item);
    const shared = items.some((other) => other !== item && itemName(other) === name);
    return shared ? `Select ${name} (${shortId(item.id)})` : `Select ${name}`;
  }

  const grid = {
    items: () => items,
    visible: () => visibleItems(),
    notices,
    createButton,
    /** Re-reads the list from the API and redraws. */
    async reload() {
      try {
        items = (await load()) ?? [];
        loaded = true;
      } catch (error) {
        loaded = true;
        items = [];
        notices.show('error', `Could not load your ${noun}s: ${error.message}`);
      }
      grid.draw();
    },
    /** Replaces one item (after a change the API returned) and redraws. */
    replace(updated) {
      items = items.map((item) => (item.id === updated.id ? updated : item));
      grid.draw();
    },
    /**
     * Disables Create with a sentence saying why (`reason`), or enables it (`null`): a refusal
     * the console can foresee is shown before the user types anything.
     */
    blockCreate(reason) {
      createBlocked = reason;
      grid.updateToolbar();
    },
    draw() {
      const shown = visibleItems();
      // What the search or filter hides cannot stay selected: Delete acts on what is seen.
      for (const chosen of [...selected]) {
        if (!shown.some((item) => item.id === chosen)) {
          selected.delete(chosen);
        }
      }
      const rows = shown.map((item) => {
        const checkbox = h('input', {
          type: 'checkbox',
          'aria-label': selectLabel(item),
          checked: selected.has(item.id),
        });
        checkbox.addEventListener('change', () => {
          if (checkbox.checked) {
            selected.add(item.id);
          } else {
            selected.delete(item.id);
          }
          grid.updateToolbar();
        });
        return h(
          'tr',
          { dataset: { id: item.id } },
          h('td', { class: 'select-cell' }, checkbox),
          columns.map((column) =>
            column.rowHeader
              ? h('th', { scope: 'row', class: column.width, 'data-label': column.label }, column.cell(item))
              : h('td', { class: column.width, 'data-label': column.label }, column.cell(item)),
          ),
        );
      });
      const wide = columns.length + 1;
      if (!loaded) {
        rows.push(h('tr', {}, h('td', { colspan: wide, class: 'empty' }, 'Loading\u2026')));
      } else if (items.length === 0) {
        rows.push(h('tr', {}, h('td', { colspan: wide, class: 'empty' }, emptyText)));
      } else if (shown.length === 0) {
        const clear = h('button', { type: 'button', class: 'button button-small', 'data-action': 'clear-view' }, 'Show all keys');
        clear.addEventListener('click', () => {
          viewControls?.reset();
          grid.draw();
          viewControls?.focusSearch();
        });
        rows.push(
          h('tr', {}, h('td', { colspan: wide, class: 'empty' }, `None of your ${items.length} ${noun}s matches the search and filter. `, clear)),
        );
      }
      body.replaceChildren(...rows);
      for (const { key, th, indicator } of sortHeaders) {
        const active = state.sort?.key === key;
        th.setAttribute('aria-sort', active ? state.sort.direction : 'none');
        indicator.textContent = active ? (state.sort.direction === 'ascending' ? '\u25b2' : '\u25bc') : '';
      }
      viewControls?.showSort();
      grid.updateToolbar(shown);
      afterDraw?.(grid);
    },
    updateToolbar(shown = visibleItems()) {
      const count = selected.size;
      deleteButton.disabled = count === 0;
      selectAll.checked = count > 0 && count === shown.length;
      selectAll.indeterminate = count > 0 && count < shown.length;
      selectAll.disabled = shown.length === 0;
      const parts = [];
      if (view && loaded && shown.length !== items.length) {
        parts.push(`Showing ${shown.length} of ${items.length} ${noun}s`);
      }
      if (count > 0) {
        parts.push(`${count} selected`);
      }
      selection.textContent = parts.join(' \u00b7 ');
      createButton.disabled = Boolean(createBlocked) || (createNeedsList && !loaded);
      createNote.hidden = !createBlocked;
      createNote.textContent = createBlocked ?? '';
      if (createBlocked) {
        createButton.setAttribute('aria-describedby', createNoteId);
      } else {
        createButton.removeAttribute('aria-describedby');
      }
    },
    focusIn(itemId, selector) {
      body.querySelector(`tr[data-id="${CSS.escape(itemId)}"] ${selector}`)?.focus();
    },
  };

  selectAll.addEventListener('change', () => {
    selected.clear();
    if (selectAll.checked) {
      for (const item of visibleItems()) {
        selected.add(item.id);
      }
    }
    grid.draw();
  });
  createButton.addEventListener('click', () => onCreate(grid));
  deleteButton.addEventListener('click', () => {
    const chosen = items.filter((item) => selected.has(item.id));
    if (chosen.length > 0) {
      confirmDelete(chosen);
    }
  });

  function confirmDelete(chosen) {
    const many = chosen.length > 1;
    const formError = h('div', { class: 'notice notice-error', role: 'alert', hidden: true });
    const actions = dialogActions('Cancel', many ? `Delete ${chosen.length} ${noun}s` : `Delete ${noun}`, 'button-danger');
    const form = h(
      'form',
      { class: 'form', novalidate: true },
      formError,
      h(
        'ul',
        { class: 'delete-list' },
        chosen.map((item) => h('li', {}, itemName(item), ' ', h('code', { class: 'muted', title: item.id }, item.id))),
      ),
      actions.element,
    );
    const dialog = openDialog({
      title: many ? `Delete ${chosen.length} ${noun}s?` : `Delete ${noun} \u201c${itemName(chosen[0])}\u201d?`,
      description: 'Anything that uses them stops working at once. This cannot be undone.',
      content: form,
      initialFocus: actions.cancel,
      returnFocus: () => createButton,
    });
    actions.cancel.addEventListener('click', () => dialog.close());
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      if (isBusy(actions.submit)) {
        return;
      }
      setBusy(actions.submit, true, 'Deleting\u2026');
      const ids = chosen.map((item) => item.id);
      try {
        await onDelete(ids);
      } catch (error) {
        setBusy(actions.submit, false);
        formError.textContent = error.message;
        formError.hidden = false;
        actions.submit.focus();
        return;
      }
      for (const deleted of ids) {
        selected.delete(deleted);
      }
      grid.updateToolbar();
      dialog.close();
      const done = many ? `Deleted ${ids.length} ${noun}s.` : `Deleted ${noun} \u201c${itemName(chosen[0])}\u201d.`;
      notices.show('success', done);
      announce(done);
      await grid.reload();
    });
  }

  grid.element = h(
    'div',
    { class: 'grid-section' },
    h(
      'div',
      { class: 'toolbar', role: 'toolbar', 'aria-label': `${caption}: actions` },
      createButton,
      deleteButton,
      selection,
    ),
    createNote,
    viewControls?.element,
    notices.element,
    h('div', { class: 'grid-scroll' }, table),
  );
  grid.draw();
  return grid;
}
