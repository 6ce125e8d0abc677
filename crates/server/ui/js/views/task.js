// The panel of one task of a run: its status and `explain` line, result
// and error, its attempts (a page at a time: a fan-out may have 100,000
// items) and what each printed, and "retry from here" for operators.

import { api, allows } from '../api.js';
import { h, replace, badge, duration, millis, json, terminal } from '../dom.js';

const PAGE = 50;

export function taskPanel(runId, name, ctx, { retry }) {
  let offset = 0;
  let last = null; // the task's figures when the attempts were last read
  let run = null;
  let disposed = false;

  const heading = h('h2', { tabindex: '-1' }, name);
  const status = h('span');
  const why = h('p', { class: 'why' });
  const figures = h('div');
  const actions = h('div', { class: 'actions' });
  const attempts = h('tbody');
  const more = h('p', { class: 'muted small' });
  const prev = h('button', { type: 'button', disabled: true, onclick: () => page(offset - PAGE) }, '← Previous');
  const next = h('button', { type: 'button', disabled: true, onclick: () => page(offset + PAGE) }, 'Next →');
  const logs = h('section', { class: 'logs', 'aria-live': 'polite', 'aria-label': 'Logs' });
  const el = h(
    'div',
    { class: 'panel', dataset: { task: name } },
    h('div', { class: 'title' }, heading, status, h('a', { href: `#/runs/${runId}`, class: 'close', 'aria-label': 'Close the task panel' }, '✕')),
    why,
    figures,
    actions,
    h('h3', {}, 'Attempts'),
    h('div', { class: 'scroll' }, h('table', { class: 'attempts' }, h('thead', {}, h('tr', {}, ['Item', 'Try', 'Status', 'Worker', 'Took', ''].map((c) => h('th', { scope: 'col', class: c === 'Worker' ? 'hide-narrow' : null }, c)))), attempts)),
    h('nav', { class: 'pager', 'aria-label': 'Attempt pages' }, prev, more, next),
    logs,
  );

  async function explain() {
    try {
      const answer = await api.explain(runId);
      const line = answer?.explanation?.tasks?.find((t) => t.task === name);
      why.textContent = line?.why ?? '';
    } catch {
      why.textContent = '';
    }
  }

  async function page(at) {
    offset = Math.max(0, at);
    let answer;
    try {
      answer = await api.attempts(runId, { task: name, limit: PAGE, offset });
    } catch (e) {
      replace(attempts, h('tr', {}, h('td', { colspan: 6, class: 'error' }, `Could not read the attempts: ${e.message}`)));
      return;
    }
    if (disposed) return;
    const items = Array.isArray(answer) ? answer : answer.items ?? answer.attempts ?? [];
    const total = Array.isArray(answer) ? null : answer.total ?? null;
    replace(
      attempts,
      items.length ? items.map(attemptRow) : h('tr', {}, h('td', { colspan: 6, class: 'muted' }, 'Nothing has run yet.')),
    );
    prev.disabled = offset === 0;
    const hasMore = Array.isArray(answer) ? items.length === PAGE : answer.next_offset != null || (total !== null ? offset + items.length < total : items.length === PAGE);
    next.disabled = !hasMore;
    prev.parentElement.hidden = offset === 0 && !hasMore;
    more.textContent = items.length ? `${offset + 1}–${offset + items.length}${total !== null ? ` of ${total}` : ''}` : '';
  }

  function attemptRow(a) {
    return h(
      'tr',
      { dataset: { execution: a.execution_id, status: a.status } },
      h('td', {}, a.item_index === null || a.item_index === undefined ? '—' : h('span', { title: a.item ?? '' }, `#${a.item_index}`, a.item ? h('span', { class: 'muted small' }, ` ${a.item}`) : null)),
      h('td', {}, a.round > 1 ? `${a.attempt} (round ${a.round})` : a.attempt),
      h('td', {}, badge(a.status), a.error ? h('div', { class: 'small error-text' }, a.error) : null),
      h('td', { class: 'small hide-narrow' }, a.worker ?? '—'),
      h('td', {}, a.duration_ms === null || a.duration_ms === undefined ? '—' : millis(a.duration_ms)),
      h('td', {}, h('button', { type: 'button', class: 'small', onclick: () => showLogs(a) }, 'Logs')),
    );
  }

  async function showLogs(a) {
    replace(logs, h('h3', {}, 'Logs'), h('p', { class: 'muted' }, 'Loading…'));
    let all;
    try {
      all = await api.logs(runId, { task: name, item: a.item_index ?? undefined, attempt: a.attempt, round: a.round });
    } catch (e) {
      replace(logs, h('h3', {}, 'Logs'), h('p', { class: 'error' }, `Could not read the logs: ${e.message}`));
      return;
    }
    const list = Array.isArray(all) ? all : all.items ?? all.attempts ?? [];
    const mine = list.find((l) => l.execution_id === a.execution_id) ?? null;
    const label = `${name}${a.item_index !== null && a.item_index !== undefined ? ` #${a.item_index}` : ''}, try ${a.attempt}`;
    const stream = (title, s) =>
      s?.text || s?.dropped
        ? h('div', {}, h('h4', {}, title, s.dropped ? h('span', { class: 'muted small' }, ` (first ${s.dropped} bytes not kept)`) : null), h('pre', { class: `log ${title}` }, s.text))
        : null;
    const out = mine?.logs;
    replace(
      logs,
      h('h3', {}, `Logs of ${label}`),
      out?.exit_code !== undefined && out?.exit_code !== null ? h('p', { class: 'exit-code' }, 'Exit code ', h('code', {}, out.exit_code)) : null,
      stream('stdout', out?.stdout),
      stream('stderr', out?.stderr),
      mine?.details ? h('div', {}, h('h4', {}, 'Details'), json(mine.details)) : null,
      !out && !mine?.details ? h('p', { class: 'muted' }, a.error ? `It printed nothing; its error: ${a.error}` : 'It printed nothing.') : null,
    );
    logs.querySelector('h3')?.setAttribute('tabindex', '-1');
    logs.querySelector('h3')?.focus();
  }

  function update(next) {
    run = next;
    const t = run.tasks.find((x) => x.name === name);
    if (!t) {
      replace(status);
      why.textContent = `Run ${runId} has no task ${name}.`;
      return;
    }
    replace(status, badge(t.status));
    replace(
      figures,
      t.items_total !== null ? h('p', {}, `${t.items_succeeded} of ${t.items_total} items succeeded, ${t.items_failed} failed.`) : null,
      h('p', { class: 'small muted' }, `Attempts ${t.attempts} · took ${duration(t.started_at, t.finished_at)}${t.earlier_rounds ? ` · ran in ${t.earlier_rounds} earlier round(s)` : ''}`),
      t.error ? h('div', {}, h('h3', {}, 'Error'), h('pre', { class: 'error-text' }, t.error)) : null,
      t.result !== null && t.result !== undefined ? h('div', {}, h('h3', {}, 'Result'), json(t.result)) : null,
    );
    replace(actions);
    if (allows(ctx.me?.role, 'operator') && terminal(run.status)) {
      actions.append(h('button', { type: 'button', id: 'retry-task', onclick: () => retry(name) }, `Retry from ${name}`));
    }
    // Re-read the attempts and the explanation when the task moved.
    const key = `${t.status}/${t.attempts}/${t.items_succeeded}/${t.items_failed}/${run.status}`;
    if (key !== last) {
      last = key;
      page(offset);
      explain();
    }
  }

  return {
    el,
    update,
    destroy() {
      disposed = true;
    },
  };
}
