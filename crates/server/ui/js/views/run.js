// One run: its DAG (live), tasks, inputs, output and error, the actions the
// caller's role allows, and the panel of the task chosen.

import { api, allows } from '../api.js';
import { follow } from '../sse.js';
import { h, replace, badge, time, duration, json, toast, terminal, runId, idTail } from '../dom.js';
import { drawGraph } from './graph.js';
import { taskPanel } from './task.js';

const NARROW = '(max-width: 720px)';

export function render(main, target, ctx) {
  const id = target.id;
  let run = null;
  let graph = null;
  let drawing = null;
  let panel = null;
  let task = target.task;
  let stream = null;
  let poll = null;
  const narrow = window.matchMedia(NARROW);

  const heading = h('h1', {}, 'Run ', h('span', { class: 'mono' }, id));
  const status = h('span');
  const live = h('span', { class: 'live', 'aria-live': 'polite' });
  const actions = h('div', { class: 'actions' });
  const facts = h('dl', { class: 'facts' });
  const hints = h('ul', { class: 'hints' });
  const dag = h('div', { class: 'dag-wrap scroll', tabindex: '-1' });
  const tasks = h('tbody');
  const details = h('div', { class: 'details' });
  const side = h('aside', { class: 'side', 'aria-label': 'Task', hidden: true });
  const error = h('p', { class: 'error', role: 'alert', hidden: true });
  const body = h(
    'div',
    { class: 'run-body' },
    h(
      'div',
      { class: 'run-main' },
      h('section', { 'aria-label': 'Graph' }, dag),
      h(
        'section',
        { 'aria-labelledby': 'tasks-h' },
        h('h2', { id: 'tasks-h' }, 'Tasks'),
        h('div', { class: 'scroll' }, h('table', { class: 'tasks' }, h('thead', {}, h('tr', {}, ['Task', 'Status', 'Attempts', 'Items', 'Duration'].map((c) => h('th', { scope: 'col', class: c === 'Attempts' ? 'hide-narrow' : null }, c)))), tasks)),
      ),
      details,
    ),
    side,
  );
  main.append(h('div', { class: 'title' }, heading, status, live), actions, facts, error, hints, body);

  function draw() {
    if (!graph) return;
    drawing = drawGraph(graph, id, narrow.matches ? 'TB' : 'LR');
    replace(dag, drawing.svg);
    drawing.update(run);
    drawing.select(task);
  }
  narrow.addEventListener('change', draw);

  function showActions() {
    replace(actions);
    if (!run || !allows(ctx.me?.role, 'operator')) return;
    if (!terminal(run.status) && run.status !== 'canceling') {
      actions.append(h('button', { type: 'button', class: 'danger', id: 'cancel', onclick: cancel }, 'Cancel run'));
    }
    if (['failed', 'canceled'].includes(run.status)) {
      actions.append(h('button', { type: 'button', id: 'retry', onclick: () => retry(null) }, 'Retry failed tasks'));
    }
  }

  async function cancel() {
    if (!window.confirm(`Cancel run ${run.id} of ${run.workflow}? Running tasks are stopped.`)) return;
    try {
      const answer = await api.cancel(id);
      toast(answer?.message ?? 'Canceling.');
      refresh();
    } catch (e) {
      toast(`Could not cancel: ${e.message}`, 'error');
    }
  }

  async function retry(fromTask) {
    try {
      const answer = await api.retry(id, fromTask);
      toast(answer?.message ?? (fromTask ? `Retrying from ${fromTask}.` : 'Retrying.'));
      const other = answer?.id && answer.id !== id && !answer.id.startsWith?.(id) ? answer.id : null;
      if (other) location.hash = `#/runs/${other}`;
      else {
        refresh();
        listen();
      }
    } catch (e) {
      toast(`Could not retry: ${e.message}`, 'error');
    }
  }

  function show(next) {
    run = next;
    replace(heading, run.workflow, ' ', h('span', { class: 'mono muted small' }, idTail(run.id)));
    document.title = `${run.workflow} ${idTail(run.id)} · Weft`;
    replace(status, badge(run.status));
    replace(
      facts,
      h('div', {}, h('dt', {}, 'Run'), h('dd', { class: 'mono' }, run.id)),
      h('div', {}, h('dt', {}, 'Created'), h('dd', {}, time(run.created_at))),
      h('div', {}, h('dt', {}, 'Started'), h('dd', {}, time(run.started_at))),
      h('div', {}, h('dt', {}, 'Finished'), h('dd', {}, time(run.finished_at))),
      h('div', {}, h('dt', {}, 'Duration'), h('dd', {}, duration(run.started_at, run.finished_at))),
      run.parent ? h('div', {}, h('dt', {}, 'Parent'), h('dd', {}, h('a', { href: `#/runs/${run.parent}` }, runId(run.parent)))) : null,
    );
    replace(hints, (run.hints ?? []).map((hint) => h('li', { class: 'hint' }, hint)));
    replace(
      tasks,
      run.tasks.map((t) =>
        h(
          'tr',
          { dataset: { task: t.name }, class: t.name === task ? 'selected' : null },
          h('td', {}, h('a', { href: `#/runs/${id}/tasks/${encodeURIComponent(t.name)}` }, t.name), t.exit_handler ? h('span', { class: 'muted small' }, ' on exit') : null),
          h('td', {}, badge(t.status)),
          h('td', { class: 'hide-narrow' }, t.attempts),
          h('td', {}, t.items_total === null ? '—' : `${t.items_succeeded} ✓ ${t.items_failed} ✗ / ${t.items_total}`),
          h('td', {}, duration(t.started_at, t.finished_at)),
        ),
      ),
    );
    replace(
      details,
      h('section', { 'aria-labelledby': 'in-h' }, h('h2', { id: 'in-h' }, 'Inputs'), json(run.input)),
      h('section', { 'aria-labelledby': 'out-h' }, h('h2', { id: 'out-h' }, 'Output'), json(run.output)),
      run.error ? h('section', { 'aria-labelledby': 'err-h' }, h('h2', { id: 'err-h' }, 'Error'), h('pre', { class: 'error-text' }, run.error)) : null,
      run.children?.length
        ? h('section', { 'aria-labelledby': 'ch-h' }, h('h2', { id: 'ch-h' }, 'Child runs'), h('ul', {}, run.children.map((c) => h('li', {}, h('a', { href: `#/runs/${c.id}` }, runId(c.id)), ' ', c.task ?? '', ' ', c.status ? badge(c.status) : null))))
        : null,
    );
    showActions();
    if (!graph) {
      // No graph yet (or the server has none): one box per task, no edges.
      graph = { nodes: run.tasks.map((t) => ({ name: t.name, action: '', needs: [], exit_handler: t.exit_handler })), edges: [], fallback: true };
      draw();
    } else drawing?.update(run);
    panel?.update(run);
  }

  async function refresh() {
    try {
      show(await api.run(id));
      error.hidden = true;
    } catch (e) {
      error.textContent = e.status === 404 ? `There is no run ${id}.` : `Could not read the run: ${e.message}`;
      error.hidden = false;
    }
  }

  function listen() {
    stream?.stop();
    if (poll) clearInterval(poll);
    poll = null;
    stream = follow(`/api/v1/runs/${encodeURIComponent(id)}/events`, {
      on: { status: (next) => next && show(next) },
      onState: (state) => {
        live.textContent = { live: '● live', retrying: 'reconnecting…', ended: '' }[state];
        live.className = `live ${state}`;
      },
      onUnsupported: () => {
        live.textContent = 'refreshing every 1.5 s';
        poll = setInterval(() => {
          if (run && terminal(run.status)) {
            clearInterval(poll);
            live.textContent = '';
          } else refresh();
        }, 1500);
      },
    });
  }

  function openTask(name) {
    task = name;
    panel?.destroy();
    panel = null;
    drawing?.select(task);
    for (const tr of tasks.querySelectorAll('tr')) tr.classList.toggle('selected', tr.dataset.task === task);
    if (!task) {
      side.hidden = true;
      body.classList.remove('with-side');
      return;
    }
    panel = taskPanel(id, task, ctx, { retry });
    replace(side, panel.el);
    side.hidden = false;
    body.classList.add('with-side');
    if (run) panel.update(run);
  }

  (async () => {
    const [g, r] = await Promise.allSettled([api.graph(id), api.run(id)]);
    if (g.status === 'fulfilled') graph = g.value;
    else if (![404, 405].includes(g.reason?.status)) toast(`Could not read the graph: ${g.reason?.message}`, 'error');
    if (r.status === 'rejected') {
      const e = r.reason;
      error.textContent = e?.status === 404 ? `There is no run ${id}.` : `Could not read the run: ${e?.message}`;
      error.hidden = false;
      return;
    }
    if (graph) draw();
    show(r.value);
    listen();
    openTask(task);
  })();

  return {
    update(next) {
      if (next.task !== task) {
        openTask(next.task);
        (next.task ? side.querySelector('h2') : dag)?.focus?.();
      }
    },
    destroy() {
      stream?.stop();
      if (poll) clearInterval(poll);
      narrow.removeEventListener('change', draw);
      panel?.destroy();
    },
  };
}
