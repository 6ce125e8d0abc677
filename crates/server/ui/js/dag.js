// The DAG's layered layout: pure functions of the graph (no DOM), so they
// run under node in the tests (tests/browser/dag.test.mjs).
//
// 1. layers: each task one layer after its deepest need (roots at 0); exit
//    handlers after every main task, as `weft graph` draws them;
// 2. order within layers: a few barycenter sweeps, which untangle most
//    crossings of workflow-sized graphs;
// 3. coordinates: layers as columns (`LR`) or rows (`TB`, for narrow
//    screens), each centred on the widest; edges as curves between them.

/** Sizes of the drawing, in SVG units. */
export const DEFAULTS = { nodeWidth: 176, nodeHeight: 62, gapLayer: 64, gapNode: 22, margin: 12, direction: 'LR' };

/**
 * The edges of a graph: `graph.edges` when given, else one per `needs`
 * entry; edges naming unknown tasks, and duplicates, are left out.
 */
export function edgesOf(graph) {
  const names = new Set(graph.nodes.map((n) => n.name));
  const raw = graph.edges ?? graph.nodes.flatMap((n) => (n.needs ?? []).map((from) => ({ from, to: n.name })));
  const seen = new Set();
  return raw.filter((e) => {
    const key = `${e.from}\u0000${e.to}`;
    if (!names.has(e.from) || !names.has(e.to) || e.from === e.to || seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

/**
 * Each node's layer: 0 for roots, else one more than its deepest need; exit
 * handlers' roots one layer after the deepest main task. Nodes on a cycle
 * (never in a valid workflow) go after the rest rather than hang the page.
 */
export function layers(graph, edges = edgesOf(graph)) {
  const layer = new Map();
  const preds = new Map(graph.nodes.map((n) => [n.name, []]));
  for (const e of edges) preds.get(e.to).push(e.from);
  for (const exitPhase of [false, true]) {
    const base = exitPhase && layer.size ? Math.max(...layer.values()) + 1 : 0;
    let todo = graph.nodes.filter((n) => Boolean(n.exit_handler) === exitPhase).map((n) => n.name);
    let progress = true;
    while (todo.length && progress) {
      progress = false;
      const later = [];
      for (const name of todo) {
        const ps = preds.get(name);
        if (ps.every((p) => layer.has(p) || !todo.includes(p))) {
          // A need in the other phase (a handler needing a main task) counts
          // from this phase's base.
          const depth = ps.reduce((d, p) => Math.max(d, layer.has(p) ? Math.max(layer.get(p) + 1, base) : base), base);
          layer.set(name, depth);
          progress = true;
        } else {
          later.push(name);
        }
      }
      todo = later;
    }
    if (todo.length) {
      const after = layer.size ? Math.max(...layer.values()) + 1 : base;
      for (const name of todo) layer.set(name, after);
    }
  }
  return layer;
}

/**
 * The nodes of each layer in drawing order: the graph's order first, then
 * barycenter sweeps (down, up) that place each node near the mean position
 * of its neighbours in the layer before (after).
 */
export function order(graph, layerOf, edges = edgesOf(graph), sweeps = 4) {
  const count = layerOf.size ? Math.max(...layerOf.values()) + 1 : 0;
  const rows = Array.from({ length: count }, () => []);
  for (const n of graph.nodes) rows[layerOf.get(n.name)].push(n.name);
  const preds = new Map(graph.nodes.map((n) => [n.name, []]));
  const succs = new Map(graph.nodes.map((n) => [n.name, []]));
  for (const e of edges) {
    preds.get(e.to).push(e.from);
    succs.get(e.from).push(e.to);
  }
  const position = () => {
    const pos = new Map();
    rows.forEach((row) => row.forEach((name, i) => pos.set(name, i)));
    return pos;
  };
  const sortBy = (row, neighbours, pos) => {
    const key = new Map(
      row.map((name, i) => {
        const ns = neighbours.get(name).filter((m) => pos.has(m));
        return [name, ns.length ? ns.reduce((a, m) => a + pos.get(m), 0) / ns.length : i];
      }),
    );
    // Stable: ties keep their order.
    return row.map((name, i) => [name, i]).sort((a, b) => key.get(a[0]) - key.get(b[0]) || a[1] - b[1]).map(([name]) => name);
  };
  let best = rows.map((r) => [...r]);
  let bestCrossings = crossings(best, edges, layerOf);
  for (let s = 0; s < sweeps && bestCrossings > 0; s++) {
    for (let l = 1; l < count; l++) rows[l] = sortBy(rows[l], preds, position());
    for (let l = count - 2; l >= 0; l--) rows[l] = sortBy(rows[l], succs, position());
    const c = crossings(rows, edges, layerOf);
    if (c < bestCrossings) {
      best = rows.map((r) => [...r]);
      bestCrossings = c;
    }
  }
  return best;
}

/** How many pairs of edges between adjacent layers cross. */
export function crossings(rows, edges, layerOf) {
  const pos = new Map();
  rows.forEach((row) => row.forEach((name, i) => pos.set(name, i)));
  const adjacent = edges.filter((e) => layerOf.get(e.to) - layerOf.get(e.from) === 1);
  let n = 0;
  for (let i = 0; i < adjacent.length; i++) {
    for (let j = i + 1; j < adjacent.length; j++) {
      const a = adjacent[i];
      const b = adjacent[j];
      if (layerOf.get(a.from) !== layerOf.get(b.from)) continue;
      const d1 = pos.get(a.from) - pos.get(b.from);
      const d2 = pos.get(a.to) - pos.get(b.to);
      if (d1 * d2 < 0) n++;
    }
  }
  return n;
}

/**
 * The whole layout: `{nodes: [{name, layer, index, x, y, width, height}],
 * edges: [{from, to, path}], width, height}` (x, y: top-left corners).
 */
export function layout(graph, options = {}) {
  const o = { ...DEFAULTS, ...options };
  const edges = edgesOf(graph);
  const layerOf = layers(graph, edges);
  const rows = order(graph, layerOf, edges);
  const across = o.direction === 'TB' ? o.nodeWidth : o.nodeHeight; // size along a layer
  const along = o.direction === 'TB' ? o.nodeHeight : o.nodeWidth; // size across layers
  const widest = Math.max(0, ...rows.map((r) => r.length));
  const span = widest * across + Math.max(0, widest - 1) * o.gapNode;
  const boxes = new Map();
  rows.forEach((row, l) => {
    const rowSpan = row.length * across + Math.max(0, row.length - 1) * o.gapNode;
    const start = o.margin + (span - rowSpan) / 2;
    row.forEach((name, i) => {
      const a = o.margin + l * (along + o.gapLayer); // position across layers
      const b = start + i * (across + o.gapNode); // position along the layer
      const [x, y] = o.direction === 'TB' ? [b, a] : [a, b];
      boxes.set(name, { name, layer: l, index: i, x, y, width: o.nodeWidth, height: o.nodeHeight });
    });
  });
  const nodes = graph.nodes.map((n) => boxes.get(n.name));
  const laid = edges.map((e) => ({ ...e, path: curve(boxes.get(e.from), boxes.get(e.to), o.direction) }));
  const depth = rows.length * along + Math.max(0, rows.length - 1) * o.gapLayer;
  const [width, height] = o.direction === 'TB' ? [span, depth] : [depth, span];
  return { nodes, edges: laid, width: width + 2 * o.margin, height: height + 2 * o.margin, direction: o.direction };
}

/** An SVG path from `a`'s outgoing side to `b`'s incoming side. */
export function curve(a, b, direction = 'LR') {
  const r = (v) => Math.round(v * 10) / 10;
  if (direction === 'TB') {
    const [sx, sy, ex, ey] = [a.x + a.width / 2, a.y + a.height, b.x + b.width / 2, b.y];
    const d = Math.max(24, (ey - sy) / 2);
    return `M${r(sx)},${r(sy)} C${r(sx)},${r(sy + d)} ${r(ex)},${r(ey - d)} ${r(ex)},${r(ey)}`;
  }
  const [sx, sy, ex, ey] = [a.x + a.width, a.y + a.height / 2, b.x, b.y + b.height / 2];
  const d = Math.max(24, (ex - sx) / 2);
  return `M${r(sx)},${r(sy)} C${r(sx + d)},${r(sy)} ${r(ex - d)},${r(ey)} ${r(ex)},${r(ey)}`;
}

/** The words under a task's name: what its trigger and `when` are, if not the default. */
export function conditions(node) {
  const parts = [];
  if (node.trigger && node.trigger !== 'all_success') parts.push(`trigger ${node.trigger}`);
  if (node.when) parts.push(`when ${node.when.replace(/^\{\{\s*|\s*\}\}$/g, '')}`);
  return parts.join(' · ');
}

/** A fan-out's bar: fractions done and failed of its total (null when not a fan-out). */
export function progress(task) {
  if (!task || task.items_total === null || task.items_total === undefined) return null;
  const total = task.items_total;
  if (total <= 0) return { total: 0, succeeded: 0, failed: 0, ok: 0, bad: 0 };
  return {
    total,
    succeeded: task.items_succeeded,
    failed: task.items_failed,
    ok: Math.min(1, task.items_succeeded / total),
    bad: Math.min(1, task.items_failed / total),
  };
}
