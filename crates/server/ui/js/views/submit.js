// Submit a workflow: paste its YAML and inputs (JSON). The server validates
// it; each diagnostic is shown under the line it is about.

import { api, allows } from '../api.js';
import { h, replace } from '../dom.js';

const EXAMPLE = `name: hello
input:
  who: world
tasks:
  greet:
    action: echo
    input: { message: "hello {{ input.who }}" }
  shout:
    needs: [greet]
    action: shell
    input: { command: ["echo", "{{ tasks.greet.result.message }}"] }
`;

/** Where a JSON.parse error is, as "line L, column C", from its message. */
function jsonError(text, error) {
  const m = /position (\d+)/.exec(error.message);
  if (!m) return error.message;
  const before = text.slice(0, Number(m[1]));
  const line = before.split('\n').length;
  const column = before.length - before.lastIndexOf('\n');
  return `${error.message.replace(/ in JSON at position \d+.*$/, '')} at line ${line}, column ${column}`;
}

export function render(main, target, ctx) {
  main.append(h('h1', {}, 'Submit a workflow'));
  if (!allows(ctx.me?.role, 'operator')) {
    main.append(h('p', { class: 'error', role: 'alert' }, `Your token's role (${ctx.me?.role}) may not submit runs: that needs operator or admin.`));
    return { destroy() {} };
  }
  const yaml = h('textarea', { id: 'yaml', name: 'workflow', rows: 18, spellcheck: 'false', required: true, class: 'code', 'aria-describedby': 'diagnostics' });
  yaml.value = sessionStorage.getItem('weft.draft') ?? EXAMPLE;
  const inputs = h('textarea', { id: 'inputs', name: 'inputs', rows: 4, spellcheck: 'false', class: 'code', 'aria-describedby': 'inputs-error' });
  inputs.value = '{}';
  const inputsError = h('p', { id: 'inputs-error', class: 'error', role: 'alert', hidden: true });
  const key = h('input', { id: 'key', name: 'idempotency_key', autocomplete: 'off' });
  const diagnostics = h('section', { id: 'diagnostics', class: 'diagnostics', 'aria-live': 'polite' });
  const submitButton = h('button', { type: 'submit', class: 'primary' }, 'Submit');
  const validateButton = h('button', { type: 'button', onclick: validate }, 'Validate');

  const form = h(
    'form',
    { class: 'submit', onsubmit: submit },
    h('label', { for: 'yaml' }, 'Workflow (YAML)'),
    yaml,
    diagnostics,
    h('label', { for: 'inputs' }, 'Inputs (JSON object)'),
    inputs,
    inputsError,
    h('label', { for: 'key' }, 'Idempotency key ', h('span', { class: 'muted' }, '(optional: a second submit with it returns the first run)')),
    key,
    h('div', { class: 'actions' }, submitButton, validateButton),
  );
  main.append(form);
  yaml.addEventListener('input', () => sessionStorage.setItem('weft.draft', yaml.value));

  /** Selects line `n` (1-based) of the YAML in the editor. */
  function goTo(n) {
    const lines = yaml.value.split('\n');
    const start = lines.slice(0, n - 1).reduce((a, l) => a + l.length + 1, 0);
    yaml.focus();
    yaml.setSelectionRange(start, start + (lines[n - 1]?.length ?? 0));
  }

  /** The source with each diagnostic under its line; those with no line first. */
  function showDiagnostics(list, summary) {
    if (!list.length) {
      replace(diagnostics, summary ? h('p', { class: 'ok' }, summary) : null);
      return;
    }
    const lines = yaml.value.split('\n');
    const at = new Map();
    const loose = [];
    for (const d of list) {
      if (d.line >= 1 && d.line <= lines.length) {
        if (!at.has(d.line)) at.set(d.line, []);
        at.get(d.line).push(d);
      } else loose.push(d);
    }
    const message = (d) =>
      h(
        'div',
        { class: `diag ${d.severity}`, dataset: { line: d.line, column: d.column } },
        h('strong', {}, d.severity === 'warning' ? 'warning' : 'error'),
        d.line ? ` line ${d.line}${d.column ? `, column ${d.column}` : ''}: ` : ': ',
        d.message,
        d.hint ? h('div', { class: 'hint' }, 'hint: ', d.hint) : null,
      );
    // Show the lines around each problem (two before, one after).
    const shown = new Set();
    for (const n of at.keys()) for (let i = n - 2; i <= n + 1; i++) if (i >= 1 && i <= lines.length) shown.add(i);
    const rows = [];
    let previous = 0;
    for (const n of [...shown].sort((a, b) => a - b)) {
      if (n > previous + 1) rows.push(h('li', { class: 'gap', 'aria-hidden': 'true' }, '⋯'));
      previous = n;
      rows.push(
        h(
          'li',
          { class: at.has(n) ? 'line bad' : 'line', dataset: { line: n } },
          h('button', { type: 'button', class: 'lineno', title: `Go to line ${n}`, onclick: () => goTo(n) }, n),
          h('code', {}, lines[n - 1] || ' '),
        ),
      );
      for (const d of at.get(n) ?? []) {
        if (d.column >= 1) rows.push(h('li', { class: 'caret', 'aria-hidden': 'true' }, h('span'), h('code', {}, `${' '.repeat(d.column - 1)}^`)));
        rows.push(h('li', { class: 'note' }, message(d)));
      }
    }
    replace(diagnostics, h('p', { class: 'error', role: 'alert' }, summary), loose.map(message), rows.length ? h('ol', { class: 'source' }, rows) : null);
  }

  function parseInputs() {
    inputsError.hidden = true;
    const text = inputs.value.trim() || '{}';
    try {
      const value = JSON.parse(text);
      if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new Error('the inputs must be a JSON object, like {"name": "value"}');
      return value;
    } catch (e) {
      inputsError.textContent = `Inputs: ${jsonError(text, e)}`;
      inputsError.hidden = false;
      inputs.focus();
      return null;
    }
  }

  async function validate() {
    try {
      const answer = await api.validate(yaml.value);
      const list = answer.diagnostics ?? [];
      if (answer.valid) showDiagnostics(list.filter((d) => d.severity === 'warning'), `Valid: workflow ${answer.workflow ?? ''}.`.replace(' .', '.'));
      else showDiagnostics(list, `The workflow has ${list.length} problem${list.length === 1 ? '' : 's'}.`);
    } catch (e) {
      if (e.problem?.diagnostics) showDiagnostics(e.problem.diagnostics, e.message);
      else replace(diagnostics, h('p', { class: 'error', role: 'alert' }, `Could not validate: ${e.message}`));
    }
  }

  async function submit(e) {
    e.preventDefault();
    const values = parseInputs();
    if (!values) return;
    submitButton.disabled = true;
    try {
      const run = await api.submit({ workflow: yaml.value, inputs: values, idempotency_key: key.value.trim() || undefined });
      sessionStorage.removeItem('weft.draft');
      location.hash = `#/runs/${run.id}`;
    } catch (err) {
      if (err.status === 422) showDiagnostics(err.problem?.diagnostics ?? [], err.message);
      else replace(diagnostics, h('p', { class: 'error', role: 'alert' }, `Could not submit: ${err.message}`));
      diagnostics.querySelector('.error')?.scrollIntoView({ block: 'nearest' });
    } finally {
      submitButton.disabled = false;
    }
  }

  return { destroy() {} };
}
