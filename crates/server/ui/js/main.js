// The app: who is logged in, and which view the hash route shows.
//
// Routes: #/login, #/runs?status=&workflow=, #/runs/{id},
// #/runs/{id}/tasks/{task}, #/submit.

import { api, token, setToken, isDev, onUnauthorized, allows } from './api.js';
import { h, replace, toast } from './dom.js';
import * as login from './views/login.js';
import * as runs from './views/runs.js';
import * as run from './views/run.js';
import * as submit from './views/submit.js';

const session = { me: null };
let current = null; // the view shown: {name, key, update?(params), destroy()}

/** Parses the hash into a view name, its parameters and its query. */
export function parse(hash) {
  const [path, q = ''] = hash.replace(/^#/, '').split('?');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  const query = Object.fromEntries(new URLSearchParams(q));
  if (parts[0] === 'login') return { name: 'login', query };
  if (parts[0] === 'submit') return { name: 'submit', query };
  if (parts[0] === 'runs' && parts[1]) {
    return { name: 'run', key: parts[1], id: parts[1], task: parts[2] === 'tasks' ? parts[3] ?? null : null, query };
  }
  return { name: 'runs', key: q, query };
}

/** Whether there is a session; asks `GET /api/v1/me` once per token. */
async function check() {
  if (session.me) return true;
  if (!isDev() && !token()) return false;
  try {
    session.me = await api.me();
    return true;
  } catch (error) {
    if (error.status === 401) {
      setToken(null);
      return false;
    }
    throw error;
  }
}

function header() {
  const who = document.getElementById('who');
  const logout = document.getElementById('logout');
  const submitLink = document.querySelector('[data-nav="submit"]');
  if (session.me) {
    replace(who, h('span', { class: 'name' }, session.me.name), ' ', h('span', { class: `role role-${session.me.role}` }, session.me.role));
    logout.hidden = isDev();
    submitLink.hidden = !allows(session.me.role, 'operator');
  } else {
    replace(who);
    logout.hidden = true;
    submitLink.hidden = true;
  }
}

async function route() {
  const target = parse(location.hash || '#/runs');
  const main = document.getElementById('main');
  let loggedIn = false;
  try {
    loggedIn = await check();
  } catch (error) {
    current?.destroy();
    current = null;
    replace(main, h('div', { class: 'error', role: 'alert' }, `The server cannot be reached: ${error.message}`));
    return;
  }
  header();
  if (!loggedIn && target.name !== 'login') {
    location.replace(`#/login?next=${encodeURIComponent(location.hash || '#/runs')}`);
    return;
  }
  if (loggedIn && target.name === 'login') {
    location.replace(target.query.next || '#/runs');
    return;
  }
  for (const a of document.querySelectorAll('[data-nav]')) {
    if (a.dataset.nav === target.name || (a.dataset.nav === 'runs' && target.name === 'run')) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  // The same run with another task: the run view stays (and its stream).
  if (current && current.name === target.name && current.key === target.key && current.update) {
    current.update(target);
    return;
  }
  current?.destroy();
  const ctx = {
    me: session.me,
    login: async (value) => {
      setToken(value);
      session.me = null;
      return check();
    },
  };
  const views = { login, runs, run, submit };
  replace(main);
  const view = views[target.name].render(main, target, ctx);
  current = { name: target.name, key: target.key, ...view };
  // Focus goes to the view's first field when it asks (log-in), else its heading.
  const heading = main.querySelector('h1');
  if (heading) heading.tabIndex = -1;
  (main.querySelector('[autofocus]') ?? heading)?.focus({ preventScroll: true });
  document.title = `${heading?.textContent ?? 'Weft'} · Weft`;
}

onUnauthorized(() => {
  if (!session.me) return;
  session.me = null;
  setToken(null);
  toast('Your token is no longer accepted: log in again.', 'error');
  route();
});

document.getElementById('logout').addEventListener('click', () => {
  setToken(null);
  session.me = null;
  location.hash = '#/login';
});

window.addEventListener('hashchange', route);
route();
