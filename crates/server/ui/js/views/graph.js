// The run's DAG drawn as SVG from the layout of ../dag.js: one link per
// task (keyboard reachable, opens its panel), coloured by status, with a
// progress bar for fan-outs; `update(status)` recolours it live.

import { layout, conditions, progress } from '../dag.js';
import { s } from '../dom.js';

const NODE_HEIGHT = 62;

/** Cuts text to `n` characters with an ellipsis. */
function cut(text, n) {
  return text.length > n ? `${text.slice(0, n - 1)}…` : text;
}

/**
 * Draws `graph` for run `runId`; `direction` 'LR' or 'TB'. Returns
 * `{svg, update(runStatus), select(task)}`.
 */
export function drawGraph(graph, runId, direction) {
  // Narrower boxes top to bottom: phones are narrow.
  const nodeWidth = direction === 'TB' ? 150 : 176;
  const chars = direction === 'TB' ? 23 : 27;
  const d = layout(graph, { direction, nodeWidth: nodeWidth, nodeHeight: NODE_HEIGHT, gapNode: direction === 'TB' ? 14 : 22 });
  const byName = new Map(graph.nodes.map((n) => [n.name, n]));
  const svg = s('svg', {
    class: `dag ${direction}`,
    viewBox: `0 0 ${d.width} ${d.height}`,
    width: d.width,
    height: d.height,
    role: 'group',
    'aria-label': `The workflow's tasks and what each needs (${graph.nodes.length} tasks)`,
  });
  svg.append(
    s('defs', {}, s('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' }, s('path', { d: 'M0,0 L10,5 L0,10 z', class: 'arrowhead' }))),
  );
  const edges = s('g', { class: 'edges', 'aria-hidden': 'true' });
  for (const e of d.edges) {
    const to = byName.get(e.to);
    const conditional = Boolean(conditions(to));
    edges.append(s('path', { d: e.path, class: `edge${conditional ? ' conditional' : ''}`, 'marker-end': 'url(#arrow)', dataset: { from: e.from, to: e.to } }));
  }
  svg.append(edges);
  const nodes = new Map();
  for (const box of d.nodes) {
    const n = byName.get(box.name);
    const cond = conditions(n);
    const kind = [n.action, n.with_items ? 'fan-out' : null, n.exit_handler ? 'on exit' : null, n.workflow ? `runs ${n.workflow}` : null].filter(Boolean).join(' · ');
    const bar = s('g', { class: 'bar', hidden: true },
      s('rect', { class: 'bar-bg', x: 10, y: NODE_HEIGHT - 10, width: nodeWidth - 20, height: 5, rx: 2 }),
      s('rect', { class: 'bar-ok', x: 10, y: NODE_HEIGHT - 10, width: 0, height: 5, rx: 2 }),
      s('rect', { class: 'bar-bad', x: 10, y: NODE_HEIGHT - 10, width: 0, height: 5, rx: 2 }));
    const counts = s('text', { class: 'counts', x: nodeWidth - 10, y: 18, 'text-anchor': 'end' });
    const title = s('title', {}, '');
    const a = s('a', { href: `#/runs/${runId}/tasks/${encodeURIComponent(n.name)}`, class: 'node st-waiting', dataset: { task: n.name, status: 'waiting' }, transform: `translate(${box.x},${box.y})` },
      title,
      s('rect', { class: 'box', width: nodeWidth, height: NODE_HEIGHT, rx: 8 }),
      s('text', { class: 'name', x: 10, y: 19 }, cut(n.name, chars - 10)),
      counts,
      s('text', { class: 'kind', x: 10, y: 35 }, cut(kind, chars)),
      cond ? s('text', { class: 'cond', x: 10, y: 49 }, cut(cond, chars)) : null,
      bar);
    nodes.set(n.name, { a, bar, counts, title, node: n, cond, kind });
    svg.append(a);
  }

  function update(run) {
    const tasks = new Map((run?.tasks ?? []).map((t) => [t.name, t]));
    for (const [name, v] of nodes) {
      const t = tasks.get(name);
      const status = t?.status ?? 'waiting';
      v.a.setAttribute('class', `node st-${status}${v.a.classList.contains('selected') ? ' selected' : ''}`);
      v.a.dataset.status = status;
      const p = progress(t);
      v.bar.toggleAttribute('hidden', !p);
      let items = '';
      if (p) {
        const [, ok, bad] = v.bar.children;
        ok.setAttribute('width', (nodeWidth - 20) * p.ok);
        bad.setAttribute('x', 10 + (nodeWidth - 20) * p.ok);
        bad.setAttribute('width', (nodeWidth - 20) * p.bad);
        items = `${p.succeeded + p.failed}/${p.total}`;
        v.counts.textContent = items;
      } else {
        v.counts.textContent = t && t.attempts > 1 ? `×${t.attempts}` : '';
      }
      const words = [`${name}: ${status}`, v.kind, v.cond, p ? `${p.succeeded} done, ${p.failed} failed of ${p.total} items` : null].filter(Boolean);
      v.title.textContent = words.join('\n');
      v.a.setAttribute('aria-label', words.join(', '));
    }
  }

  function select(task) {
    for (const [name, v] of nodes) {
      v.a.classList.toggle('selected', name === task);
      if (name === task) v.a.setAttribute('aria-current', 'true');
      else v.a.removeAttribute('aria-current');
    }
  }

  return { svg, update, select };
}
