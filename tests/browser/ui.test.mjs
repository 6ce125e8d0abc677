// Weft's web UI used as a person would, in Debian's headless Chromium
// (driven by playwright-core; no browser is downloaded). Started by
// tests/tests/browser.rs with a server and an engine running:
//
//   BASE_URL      the server (http://127.0.0.1:PORT)
//   TOKEN         an operator token
//   VIEWER_TOKEN  a viewer token
//   CHROMIUM      the browser (default /usr/bin/chromium)
//   SCREENSHOTS   where screenshots go (default target/screenshots)
//
// Exits non-zero on the first failed step or if the page logged any
// console error.

import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const BASE = process.env.BASE_URL;
const TOKEN = process.env.TOKEN;
const VIEWER = process.env.VIEWER_TOKEN;
const SHOTS = process.env.SCREENSHOTS ?? 'target/screenshots';
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
if (!BASE || !TOKEN || !VIEWER) {
  console.error('BASE_URL, TOKEN and VIEWER_TOKEN must be set (tests/tests/browser.rs sets them)');
  process.exit(2);
}
mkdirSync(SHOTS, { recursive: true });

const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };
const LIVE = 60_000; // how long a run may take to reach what we wait for

/** A workflow submitted from the UI: a fan-out between two steps, a `when`, an exit handler. */
const GOOD = `name: ui-demo
input:
  size: 4
tasks:
  fetch:
    action: sleep
    input: { seconds: 2 }
  transform:
    needs: [fetch]
    with_items: [1, 2, 3, 4]
    concurrency: 2
    action: shell
    input: { command: ["sh", "-c", "echo item {{ item }}; sleep 0.3"] }
  check:
    needs: [fetch]
    when: "{{ input.size > 2 }}"
    action: echo
    input: { size: "{{ input.size }}" }
  load:
    needs: [transform, check]
    action: echo
    input: { loaded: true }
  notify:
    needs: [load]
    trigger: all_done
    action: noop
`;
const GOOD_EDGES = 5;

/** A workflow that does not validate: a need that names no task. */
const BROKEN = `name: broken
tasks:
  first:
    action: echo
  second:
    needs: [frist]
    action: noop
`;

/** A workflow whose task fails after printing to stderr. */
const FAILING = `name: ui-failing
tasks:
  prepare:
    action: echo
    input: { ok: true }
  break:
    needs: [prepare]
    action: shell
    input: { command: ["sh", "-c", "echo starting; echo disk on fire >&2; exit 3"] }
  after:
    needs: [break]
    action: noop
`;

/** A workflow that runs until canceled. */
const SLOW = `name: ui-slow
tasks:
  wait:
    action: sleep
    input: { seconds: 120 }
  never:
    needs: [wait]
    action: noop
`;

async function submitViaApi(workflow, inputs = {}) {
  const res = await fetch(`${BASE}/api/v1/runs`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ workflow, inputs }),
  });
  assert.equal(res.status, 201, `submitting over the API: ${res.status} ${await res.clone().text()}`);
  return (await res.json()).id;
}

const consoleErrors = [];
let expected = []; // console errors a step expects (a wrong token's 401)

function watch(page, label) {
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    if (expected.some((re) => re.test(m.text()))) return;
    consoleErrors.push(`[${label}] ${m.text()} (${m.location()?.url ?? ''})`);
  });
  page.on('pageerror', (e) => consoleErrors.push(`[${label}] uncaught: ${e.message}`));
}

let failures = 0;
let current = null; // the page a failure is about
async function step(name, fn) {
  const started = Date.now();
  try {
    await fn();
    console.log(`ok - ${name} (${Date.now() - started} ms)`);
  } catch (e) {
    failures++;
    console.log(`not ok - ${name} (${Date.now() - started} ms)\n  ${String(e?.stack ?? e).replaceAll('\n', '\n  ')}`);
    if (current && !current.isClosed()) {
      await shot(current, 'failure').catch(() => {});
      const seen = await current
        .evaluate(() => ({
          url: location.href,
          live: [...document.querySelectorAll('.live')].map((l) => l.textContent),
          nodes: [...document.querySelectorAll('svg.dag .node')].map((n) => `${n.dataset.task}=${n.dataset.status}`),
          alerts: [...document.querySelectorAll('[role=alert], .toast')].map((a) => a.textContent),
        }))
        .catch((err) => String(err));
      console.log(`  the page: ${JSON.stringify(seen)} (screenshot: failure.png)`);
    }
    throw e;
  }
}

async function shot(page, name) {
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: false });
}

async function login(page, token) {
  await page.goto(BASE);
  await page.waitForURL(/#\/login/);
  await page.getByLabel('API token').fill(token);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('heading', { name: 'Runs' }).waitFor();
}

const runIdOf = (page) => /#\/runs\/([0-9a-f-]{36})/.exec(page.url())?.[1];

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu'],
});
let goodRun;
let failedRun;
try {
  const desktop = await browser.newContext({ viewport: DESKTOP });
  const page = await desktop.newPage();
  current = page;
  watch(page, 'desktop');
  page.on('dialog', (d) => d.accept());

  await step('log-in refuses a wrong token, then accepts the operator token', async () => {
    await page.goto(BASE);
    await page.waitForURL(/#\/login/);
    await shot(page, 'desktop-login');
    // The browser logs the 401 answer as a failed load; it is the answer expected.
    expected = [/status of 401/];
    await page.getByLabel('API token').fill('weft_not_a_token');
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.getByText('That token is not valid').waitFor();
    expected = [];
    await page.getByLabel('API token').fill(TOKEN);
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.getByRole('heading', { name: 'Runs' }).waitFor();
    await page.locator('#who').getByText('test-operator').waitFor();
    await page.locator('#who').getByText('operator', { exact: true }).waitFor();
    assert.equal(await page.evaluate(() => sessionStorage.getItem('weft.token')), TOKEN, 'the token is kept in sessionStorage');
  });

  await step('a broken workflow shows its diagnostics at their lines', async () => {
    await page.getByRole('link', { name: 'Submit' }).click();
    await page.getByRole('heading', { name: 'Submit a workflow' }).waitFor();
    await page.getByLabel('Workflow (YAML)').fill(BROKEN);
    // The browser logs the 422 answer as a failed load; it is the answer expected.
    expected = [/status of 422/];
    await page.getByRole('button', { name: 'Submit', exact: true }).click();
    const bad = page.locator('.diagnostics li.line.bad').first();
    await bad.waitFor();
    expected = [];
    const line = Number(await bad.getAttribute('data-line'));
    assert.ok(line >= 1 && line <= BROKEN.split('\n').length, `the diagnostic is at a line of the file (${line})`);
    const note = page.locator('.diagnostics .diag').first();
    assert.match(await note.innerText(), /frist/, 'the message names the unknown need');
    console.log(`  diagnostic at line ${line}: ${(await note.innerText()).replaceAll('\n', ' ')}`);
    await shot(page, 'desktop-submit-diagnostics');
    // Clicking the line number selects that line in the editor.
    await bad.locator('button.lineno').click();
    const selected = await page.locator('#yaml').evaluate((t) => t.value.slice(t.selectionStart, t.selectionEnd));
    assert.equal(selected, BROKEN.split('\n')[line - 1]);
  });

  await step('bad inputs JSON is refused before submitting, saying where', async () => {
    await page.getByLabel('Inputs (JSON object)').fill('{"size": }');
    await page.getByRole('button', { name: 'Submit', exact: true }).click();
    await page.locator('#inputs-error').getByText(/^Inputs: .*JSON/).waitFor();
    assert.match(page.url(), /#\/submit$/, 'nothing was submitted');
  });

  await step('a workflow submitted from the UI turns green live in its DAG', async () => {
    await page.getByLabel('Workflow (YAML)').fill(GOOD);
    await page.getByRole('button', { name: 'Validate' }).click();
    await page.locator('#diagnostics .ok').getByText('Valid: workflow ui-demo.').waitFor();
    await page.getByLabel('Inputs (JSON object)').fill('{"size": 4}');
    await page.getByRole('button', { name: 'Submit', exact: true }).click();
    await page.waitForURL(/#\/runs\/[0-9a-f-]{36}$/);
    goodRun = runIdOf(page);
    await page.evaluate(() => {
      window.__sameDocument = true;
    });
    const dag = page.locator('svg.dag');
    await dag.waitFor();
    assert.equal(await page.locator('svg.dag .node').count(), 5, 'one box per task');
    assert.equal(await page.locator('svg.dag path.edge').count(), GOOD_EDGES, 'one line per need');
    assert.equal(await page.locator('svg.dag path.edge.conditional').count(), 2, 'the edges into the `when` and `trigger` tasks are marked');
    await page.locator('svg.dag .node[data-task="check"] text.cond').getByText(/when input.size > 2/).waitFor();
    await page.locator('svg.dag .node[data-task="notify"] text.cond').getByText('trigger all_done').waitFor();
    // The page shows the run unfinished, then finished, without reloading:
    // it follows the run's events. Every status a node shows is recorded.
    await page.evaluate(() => {
      window.__seen = {};
      const record = () => {
        for (const n of document.querySelectorAll('svg.dag .node')) {
          const seen = (window.__seen[n.dataset.task] ??= []);
          if (seen.at(-1) !== n.dataset.status) seen.push(n.dataset.status);
        }
      };
      record();
      new MutationObserver(record).observe(document.querySelector('#main'), { subtree: true, attributes: true, attributeFilter: ['data-status'], childList: true });
    });
    const first = await page.locator('svg.dag .node[data-task="fetch"]').getAttribute('data-status');
    assert.notEqual(first, 'succeeded', 'the first task is still running when the page shows it');
    await shot(page, 'desktop-run-live');
    await page.waitForFunction(
      () => {
        const nodes = [...document.querySelectorAll('svg.dag .node')];
        return nodes.length === 5 && nodes.every((n) => n.dataset.status === 'succeeded');
      },
      null,
      { timeout: LIVE },
    );
    await page.locator('#main > .title .badge.st-succeeded').waitFor({ timeout: LIVE });
    assert.equal(await page.evaluate(() => window.__sameDocument), true, 'the page was not reloaded');
    // The run's stream said `end`, and the page let go of it.
    await page.locator('#main > .title .live.ended').waitFor({ state: 'attached', timeout: LIVE });
    const seen = await page.evaluate(() => window.__seen);
    console.log(`  statuses seen live: ${Object.entries(seen).map(([t, s]) => `${t}: ${s.join(' → ')}`).join('; ')}`);
    assert.ok(Object.values(seen).every((s) => s.length >= 2), 'every task changed on the page while it was open');
    assert.equal(await page.locator('svg.dag .node[data-task="transform"] text.counts').textContent(), '4/4');
    assert.equal(await page.locator('#cancel').count(), 0, 'a finished run offers no cancel');
    await page.getByRole('heading', { name: 'Inputs' }).waitFor();
    await page.locator('pre.json').getByText('"size": 4').first().waitFor();
    await shot(page, 'desktop-run');
  });

  await step("the task panel pages a fan-out's attempts and shows an item's logs", async () => {
    await page.locator('svg.dag .node[data-task="transform"]').click();
    await page.waitForURL(/\/tasks\/transform$/);
    const panel = page.locator('aside .panel[data-task="transform"]');
    await panel.waitFor();
    await panel.locator('table.attempts tbody tr').nth(3).waitFor();
    assert.equal(await panel.locator('table.attempts tbody tr').count(), 4, 'one attempt per item');
    await panel.locator('table.attempts tbody tr').first().getByRole('button', { name: 'Logs' }).click();
    await panel.locator('pre.log.stdout').getByText(/item 1/).waitFor();
  });

  await step("a failed task's logs open from its node", async () => {
    failedRun = await submitViaApi(FAILING);
    await page.goto(`${BASE}/#/runs/${failedRun}`);
    const node = page.locator('svg.dag .node[data-task="break"][data-status="failed"]');
    await node.waitFor({ timeout: LIVE });
    await page.locator('#main > .title .badge.st-failed').waitFor({ timeout: LIVE });
    await page.locator('svg.dag .node[data-task="after"][data-status="skipped"]').waitFor({ timeout: LIVE });
    await node.click();
    const panel = page.locator('aside .panel[data-task="break"]');
    await panel.waitFor();
    await panel.locator('table.attempts tbody tr[data-status="failed"]').first().waitFor();
    await panel.locator('.why').filter({ hasText: /\S/ }).waitFor();
    await panel.getByRole('button', { name: 'Logs' }).first().click();
    await panel.locator('pre.log.stderr').getByText('disk on fire').waitFor();
    assert.equal(await panel.locator('.logs .exit-code').innerText(), 'Exit code 3');
    await panel.getByRole('button', { name: 'Retry from break' }).waitFor();
    await page.locator('#retry').waitFor();
    await shot(page, 'desktop-failed-logs');
  });

  await step('the DAG and the tasks are reachable by keyboard', async () => {
    await page.goto(`${BASE}/#/runs/${failedRun}`);
    await page.locator('svg.dag .node').first().waitFor();
    await page.locator('aside').waitFor({ state: 'hidden' });
    let onNode = false;
    for (let i = 0; i < 40 && !onNode; i++) {
      await page.keyboard.press('Tab');
      onNode = await page.evaluate(() => document.activeElement?.matches?.('svg.dag a.node') ?? false);
    }
    assert.ok(onNode, 'Tab reaches a task of the DAG');
    const task = await page.evaluate(() => document.activeElement.dataset.task);
    await page.keyboard.press('Enter');
    await page.waitForURL(new RegExp(`/tasks/${task}$`));
    await page.locator(`aside .panel[data-task="${task}"]`).waitFor();
  });

  await step('retry from a task starts a new round of the run, followed live', async () => {
    await page.goto(`${BASE}/#/runs/${failedRun}/tasks/break`);
    const panel = page.locator('aside .panel[data-task="break"]');
    await panel.getByRole('button', { name: 'Retry from break' }).click();
    // The same failing command fails again, in round 2.
    await panel.locator('table.attempts tbody tr').filter({ hasText: 'round 2' }).waitFor({ timeout: LIVE });
    await page.locator('#main > .title .badge.st-failed').waitFor({ timeout: LIVE });
    assert.equal(await panel.locator('table.attempts tbody tr').count(), 2, 'both rounds\' attempts are listed');
  });

  await step('a running run is canceled from its page', async () => {
    const slow = await submitViaApi(SLOW);
    await page.goto(`${BASE}/#/runs/${slow}`);
    await page.locator('svg.dag .node[data-task="wait"][data-status="running"]').waitFor({ timeout: LIVE });
    await shot(page, 'desktop-running');
    await page.getByRole('button', { name: 'Cancel run' }).click();
    await page.locator('#main > .title .badge.st-canceled').waitFor({ timeout: LIVE });
    await page.locator('svg.dag .node[data-task="wait"][data-status="canceled"]').waitFor({ timeout: LIVE });
    assert.equal(await page.locator('#cancel').count(), 0, 'no cancel once canceled');
  });

  await step('the runs list shows them, filters by status, and follows new runs live', async () => {
    await page.getByRole('link', { name: 'Runs', exact: true }).click();
    await page.locator('table.runs tbody tr').nth(2).waitFor();
    for (const id of [goodRun, failedRun]) await page.locator(`table.runs tr[data-run="${id}"]`).waitFor();
    await page.locator(`tr[data-run="${goodRun}"] .badge.st-succeeded`).waitFor();
    await shot(page, 'desktop-runs');
    await page.getByLabel('Status').selectOption('failed');
    await page.waitForURL(/status=failed/);
    await page.locator(`table.runs tr[data-run="${failedRun}"]`).waitFor();
    assert.equal(await page.locator(`table.runs tr[data-run="${goodRun}"]`).count(), 0, 'the filter hides a succeeded run');
    await page.getByLabel('Status').selectOption('');
    await page.locator(`table.runs tr[data-run="${goodRun}"]`).waitFor();
    // Two runs a page: older and newer pages by the API's cursor.
    await page.goto(`${BASE}/#/runs?limit=2`);
    await page.locator('table.runs tbody tr').nth(1).waitFor();
    const rows = () => page.locator('table.runs tbody tr').evaluateAll((trs) => trs.map((tr) => tr.dataset.run));
    const first = await rows();
    assert.equal(first.length, 2);
    await page.getByRole('button', { name: 'Older →' }).click();
    await page.getByText('page 2').waitFor();
    const second = await rows();
    assert.equal(second.length, 1, 'three runs so far: one on the second page');
    assert.ok(await page.getByRole('button', { name: 'Older →' }).isDisabled(), 'no third page');
    assert.ok(!second.some((id) => first.includes(id)), 'the second page has other runs');
    await page.getByRole('button', { name: '← Newer' }).click();
    await page.getByText('page 1').waitFor();
    assert.deepEqual(await rows(), first);
    await page.goto(`${BASE}/#/runs`);
    await page.locator(`table.runs tr[data-run="${goodRun}"]`).waitFor();
    const fresh = await submitViaApi(GOOD, { size: 1 });
    await page.locator(`table.runs tr[data-run="${fresh}"]`).waitFor({ timeout: LIVE });
    await page.locator(`table.runs tr[data-run="${fresh}"] .badge.st-succeeded`).waitFor({ timeout: LIVE });
  });
  await desktop.close();

  await step('a viewer sees runs but no actions', async () => {
    const context = await browser.newContext({ viewport: DESKTOP });
    const viewer = await context.newPage();
    current = viewer;
    watch(viewer, 'viewer');
    await login(viewer, VIEWER);
    await viewer.goto(`${BASE}/#/runs/${failedRun}`);
    await viewer.locator('#main > .title .badge.st-failed').waitFor();
    await viewer.locator('svg.dag .node').first().waitFor();
    assert.equal(await viewer.locator('#retry, #cancel').count(), 0);
    assert.ok(await viewer.locator('[data-nav="submit"]').isHidden(), 'no Submit link for a viewer');
    await viewer.goto(`${BASE}/#/submit`);
    await viewer.getByText('may not submit runs').waitFor();
    await context.close();
  });

  await step('at phone width (390×844, dark) the list, the run and the panel fit', async () => {
    // In the dark colour scheme, to see those styles too.
    const context = await browser.newContext({ viewport: PHONE, isMobile: true, hasTouch: true, deviceScaleFactor: 2, colorScheme: 'dark' });
    const phone = await context.newPage();
    current = phone;
    watch(phone, 'phone');
    await login(phone, TOKEN);
    await phone.locator(`table.runs tr[data-run="${goodRun}"]`).waitFor();
    const overflow = () => phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok((await overflow()) <= 0, `the runs list fits the width (overflow ${await overflow()} px)`);
    await shot(phone, 'phone-runs');
    await phone.locator(`tr[data-run="${goodRun}"] a`).click();
    await phone.locator('svg.dag .node').first().waitFor();
    const box = await phone.locator('svg.dag').boundingBox();
    assert.ok(box.height > box.width, 'the DAG is drawn top to bottom on a narrow screen');
    assert.ok((await overflow()) <= 0, `the run page fits the width (overflow ${await overflow()} px)`);
    await shot(phone, 'phone-run');
    await phone.locator('table.tasks a', { hasText: 'transform' }).click();
    await phone.locator('aside .panel[data-task="transform"] table.attempts tbody tr').first().waitFor();
    assert.ok((await overflow()) <= 0, `the task panel fits the width (overflow ${await overflow()} px)`);
    await phone.locator('aside .panel').scrollIntoViewIfNeeded();
    await shot(phone, 'phone-task');
    await context.close();
  });

  await step('no console errors', async () => {
    assert.deepEqual(consoleErrors, [], `the pages logged errors:\n${consoleErrors.join('\n')}`);
  });
} catch (e) {
  if (!failures) console.log(`not ok - ${e?.stack ?? e}`);
  if (consoleErrors.length) console.log(`console errors so far:\n${consoleErrors.join('\n')}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
console.log(process.exitCode ? 'FAILED' : `passed; screenshots in ${SHOTS}`);
