// Unit tests of the UI's pure modules (the DAG layout, the SSE parser),
// run under node: `node --test tests/browser/dag.test.mjs`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { layout, layers, edgesOf, order, crossings, conditions, progress, curve } from '../../crates/server/ui/js/dag.js';

const node = (name, needs = [], extra = {}) => ({ name, needs, ...extra });

test('layers: each task one after its deepest need; exit handlers after every main task', () => {
  const g = { nodes: [node('a'), node('b', ['a']), node('c', ['a']), node('d', ['b', 'c']), node('e', ['a']), node('bye', [], { exit_handler: true })] };
  const l = layers(g);
  assert.deepEqual(Object.fromEntries(l), { a: 0, b: 1, c: 1, e: 1, d: 2, bye: 3 });
});

test('layers: nodes listed before their needs, unknown needs and cycles do not hang or throw', () => {
  const g = { nodes: [node('z', ['y']), node('y', ['x']), node('x', ['nope']), node('p', ['q']), node('q', ['p'])] };
  const l = layers(g);
  assert.equal(l.get('x'), 0);
  assert.equal(l.get('y'), 1);
  assert.equal(l.get('z'), 2);
  assert.ok(l.get('p') > 2 && l.get('q') > 2, 'a cycle goes last');
  assert.equal(edgesOf(g).length, 4, 'the edge from an unknown task is left out');
});

test('order: barycenter sweeps remove the crossings of a crossed bipartite pair', () => {
  const g = { nodes: [node('a'), node('b'), node('x', ['b']), node('y', ['a'])] };
  const edges = edgesOf(g);
  const l = layers(g, edges);
  assert.equal(crossings([['a', 'b'], ['x', 'y']], edges, l), 1);
  const rows = order(g, l, edges);
  assert.equal(crossings(rows, edges, l), 0);
});

test('layout: no two boxes overlap, every box inside the drawing, edges from side to side', () => {
  const names = 'abcdefghij'.split('');
  const g = { nodes: names.map((n, i) => node(n, i === 0 ? [] : [names[Math.floor((i - 1) / 2)]])) };
  for (const direction of ['LR', 'TB']) {
    const d = layout(g, { direction });
    for (const [i, p] of d.nodes.entries()) {
      assert.ok(p.x >= 0 && p.y >= 0 && p.x + p.width <= d.width && p.y + p.height <= d.height, `${p.name} inside (${direction})`);
      for (const q of d.nodes.slice(i + 1)) {
        const apart = p.x + p.width <= q.x || q.x + q.width <= p.x || p.y + p.height <= q.y || q.y + q.height <= p.y;
        assert.ok(apart, `${p.name} and ${q.name} overlap (${direction})`);
      }
    }
    assert.equal(d.edges.length, 9);
    assert.match(d.edges[0].path, /^M[\d.]+,[\d.]+ C/);
  }
  const chain = { nodes: [node('a'), node('b', ['a']), node('c', ['b'])] };
  const lr = layout(chain);
  assert.ok(lr.width > lr.height, 'left to right is wide');
  const tb = layout(chain, { direction: 'TB' });
  assert.ok(tb.height > tb.width, 'top to bottom is tall');
});

test('layout: the empty graph and a single node', () => {
  assert.deepEqual(layout({ nodes: [] }).nodes, []);
  const one = layout({ nodes: [node('only')] });
  assert.equal(one.nodes[0].x, 12);
  assert.equal(one.width, 176 + 24);
});

test('curve: from the right side of one box to the left side of the next', () => {
  const a = { x: 0, y: 0, width: 100, height: 40 };
  const b = { x: 200, y: 100, width: 100, height: 40 };
  assert.equal(curve(a, b), 'M100,20 C150,20 150,120 200,120');
  assert.equal(curve(a, b, 'TB'), 'M50,40 C50,70 250,70 250,100');
});

test('conditions and progress', () => {
  assert.equal(conditions({ trigger: 'all_success' }), '');
  assert.equal(conditions({ trigger: 'one_failed', when: "{{ tasks.a.result == 'x' }}" }), "trigger one_failed · when tasks.a.result == 'x'");
  assert.equal(progress({ items_total: null }), null);
  assert.deepEqual(progress({ items_total: 4, items_succeeded: 2, items_failed: 1 }), { total: 4, succeeded: 2, failed: 1, ok: 0.5, bad: 0.25 });
});

test('sse parser: events split across chunks, comments, multi-line data, CRLF', async () => {
  // sse.js imports api.js, which touches the DOM only when called.
  const { parser } = await import('../../crates/server/ui/js/sse.js');
  const got = [];
  const p = parser((e) => got.push(e));
  p.push(': keep-alive\n\nevent: sta');
  p.push('tus\ndata: {"a":\ndata: 1}\n\n');
  p.push('data: plain\r\n\r\nevent: end\ndata: {}\n');
  assert.equal(got.length, 2);
  p.push('\n');
  assert.deepEqual(got.map((e) => [e.event, e.data]), [['status', '{"a":\n1}'], ['message', 'plain'], ['end', '{}']]);
});
