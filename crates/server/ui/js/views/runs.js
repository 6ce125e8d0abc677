// The runs list: newest first, filtered by status and workflow, a page at a
// time (the API's cursor), kept live by `GET /api/v1/events`.

import { api } from '../api.js';
import { follow } from '../sse.js';
import { h, replace, badge, time, duration, runId } from '../dom.js';

const STATUSES = ['pending', 'running', 'succeeded', 'failed', 'canceling', 'canceled'];
const LIMIT = 25;

/** The page size: `?limit=` of the route (1–1000), else 25. */
function pageSize(query) {
  const n = Number.parseInt(query.limit ?? '', 10);
  return Number.isFinite(n) && n >= 1 ? Math.min(n, 1000) : LIMIT;
}

export function render(main, target) {
  const filters = { status: target.query.status ?? '', workflow: target.query.workflow ?? '' };
  const limit = pageSize(target.query);
  let cursors = [null]; // the cursor of each page shown so far; the last is this page's
  let next = null;
  let rows = new Map(); // id → {item, tr}
  let poll = null;

  const status = h('select', { id: 'f-status', name: 'status' }, h('option', { value: '' }, 'any'), STATUSES.map((s) => h('option', { value: s, selected: s === filters.status }, s)));
  const workflow = h('input', { id: 'f-workflow', name: 'workflow', type: 'search', value: filters.workflow, placeholder: 'name', autocomplete: 'off' });
  const form = h(
    'form',
    {
      class: 'filters',
      role: 'search',
      onsubmit: (e) => {
        e.preventDefault();
        const q = new URLSearchParams();
        if (status.value) q.set('status', status.value);
        if (workflow.value.trim()) q.set('workflow', workflow.value.trim());
        if (target.query.limit) q.set('limit', String(limit));
        location.hash = `#/runs${q.toString() ? `?${q}` : ''}`;
      },
    },
    h('label', { for: 'f-status' }, 'Status'),
    status,
    h('label', { for: 'f-workflow' }, 'Workflow'),
    workflow,
    h('button', { type: 'submit' }, 'Filter'),
  );
  status.addEventListener('change', () => form.requestSubmit());
  const live = h('span', { class: 'live', 'aria-live': 'polite' }, 'connecting…');
  const tbody = h('tbody');
  const table = h(
    'table',
    { class: 'runs' },
    h('caption', { class: 'sr-only' }, 'Runs, newest first'),
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Run'), h('th', { scope: 'col' }, 'Workflow'), h('th', { scope: 'col' }, 'Status'), h('th', { scope: 'col', class: 'hide-narrow' }, 'Created'), h('th', { scope: 'col' }, 'Duration'))),
    tbody,
  );
  const empty = h('p', { class: 'muted', hidden: true }, 'No runs match.');
  const error = h('p', { class: 'error', role: 'alert', hidden: true });
  const newer = h('button', { type: 'button', disabled: true, onclick: () => load(cursors.length - 2) }, '← Newer');
  const older = h('button', { type: 'button', disabled: true, onclick: () => load(cursors.length) }, 'Older →');
  const pageNo = h('span', { class: 'muted' });
  main.append(
    h('div', { class: 'title' }, h('h1', {}, 'Runs'), live),
    form,
    error,
    h('div', { class: 'scroll' }, table),
    empty,
    h('nav', { class: 'pager', 'aria-label': 'Pages' }, newer, pageNo, older),
  );

  function row(item) {
    const tr = h(
      'tr',
      { dataset: { run: item.id } },
      h('td', {}, h('a', { href: `#/runs/${item.id}`, 'aria-label': `Run ${item.id}` }, runId(item.id))),
      h('td', {}, item.workflow, item.parent ? h('span', { class: 'muted small' }, ' (child)') : null),
      h('td', {}, badge(item.status)),
      h('td', { class: 'hide-narrow' }, time(item.created_at)),
      h('td', { class: 'dur', dataset: { from: item.started_at ?? '', to: item.finished_at ?? '' } }, duration(item.started_at, item.finished_at)),
    );
    return tr;
  }

  function show(items) {
    rows = new Map();
    replace(tbody, items.map((item) => {
      const tr = row(item);
      rows.set(item.id, { item, tr });
      return tr;
    }));
    empty.hidden = items.length > 0;
  }

  async function load(page) {
    cursors = cursors.slice(0, Math.max(1, page + 1));
    if (page >= cursors.length) cursors.push(next);
    error.hidden = true;
    try {
      const result = await api.runs({ status: filters.status, workflow: filters.workflow, limit, cursor: cursors[cursors.length - 1] });
      next = result.next_cursor ?? null;
      show(result.items);
    } catch (e) {
      error.textContent = `Could not list runs: ${e.message}`;
      error.hidden = false;
    }
    newer.disabled = cursors.length <= 1;
    older.disabled = !next;
    pageNo.textContent = `page ${cursors.length}`;
  }

  function matches(item) {
    return (!filters.status || item.status === filters.status) && (!filters.workflow || item.workflow === filters.workflow);
  }

  /** The newest creation time shown, in ms (runs are listed newest first). */
  function newest() {
    let max = -Infinity;
    for (const { item } of rows.values()) max = Math.max(max, Date.parse(item.created_at));
    return max;
  }

  // A run changed: update its row; a run newer than every row shown goes on
  // top of the first page (which grows: the cursor of older pages holds).
  function changed(item) {
    if (!item?.id) return;
    const known = rows.get(item.id);
    if (known) {
      const merged = { ...known.item, ...item };
      const tr = row(merged);
      known.tr.replaceWith(tr);
      rows.set(item.id, { item: merged, tr });
    } else if (cursors.length === 1 && matches(item) && item.created_at && Date.parse(item.created_at) > newest()) {
      const tr = row(item);
      tbody.prepend(tr);
      rows.set(item.id, { item, tr });
      empty.hidden = true;
    }
  }

  const stream = follow('/api/v1/events', {
    on: {
      run: changed,
      // The server dropped events for this client: read the page again.
      lagged: () => load(cursors.length - 1),
    },
    onState: (state) => {
      live.textContent = state === 'live' ? '● live' : 'reconnecting…';
      live.className = `live ${state}`;
    },
    onUnsupported: () => {
      // No event stream on this server: re-read the first page now and then.
      live.textContent = 'refreshing every 3 s';
      poll = setInterval(() => cursors.length === 1 && load(0), 3000);
    },
  });
  // Durations of running runs tick.
  const tick = setInterval(() => {
    for (const td of tbody.querySelectorAll('td.dur')) {
      if (td.dataset.from && !td.dataset.to) td.textContent = duration(td.dataset.from, null);
    }
  }, 1000);

  load(0);
  return {
    destroy() {
      stream.stop();
      clearInterval(tick);
      if (poll) clearInterval(poll);
    },
  };
}

