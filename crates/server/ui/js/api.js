// The API client: every request carries the session's bearer token; errors
// come back as ApiError holding the problem+json body (RFC 9457).

const TOKEN_KEY = 'weft.token';

/** Whether the server runs in `--dev` mode (no token needed); it says so in the page. */
export function isDev() {
  return document.querySelector('meta[name="weft-dev"]')?.content === 'true';
}

/** The token of this tab's session (kept in sessionStorage: gone when the tab closes). */
export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** An error answer of the API. `problem` is its problem+json body when it had one. */
export class ApiError extends Error {
  constructor(status, problem, fallback) {
    super(problem?.detail || problem?.title || fallback || `HTTP ${status}`);
    this.name = 'ApiError';
    this.status = status;
    this.problem = problem ?? null;
  }
}

/** Listeners told when the API answers 401 (the token is gone or wrong). */
const unauthorized = new Set();
export function onUnauthorized(fn) {
  unauthorized.add(fn);
}

/** fetch() with the token; resolves to the Response when it is 2xx, else throws ApiError. */
export async function raw(path, { method = 'GET', body, signal, headers = {} } = {}) {
  const init = { method, signal, headers: { Accept: 'application/json', ...headers } };
  const t = token();
  if (t) init.headers.Authorization = `Bearer ${t}`;
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  if (res.ok) return res;
  let problem = null;
  try {
    problem = await res.json();
  } catch {
    // not JSON: the status says enough
  }
  const error = new ApiError(res.status, problem, res.statusText);
  if (res.status === 401) unauthorized.forEach((fn) => fn(error));
  throw error;
}

/** A request answering JSON. */
export async function call(path, options) {
  const res = await raw(path, options);
  return res.status === 204 ? null : res.json();
}

const enc = encodeURIComponent;

/** A query string of the defined values of `params`, with its `?`. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  }
  const text = q.toString();
  return text ? `?${text}` : '';
}

export const api = {
  me: () => call('/api/v1/me'),
  runs: (params) => call(`/api/v1/runs${query(params)}`),
  run: (id) => call(`/api/v1/runs/${enc(id)}`),
  graph: (id) => call(`/api/v1/runs/${enc(id)}/graph`),
  attempts: (id, params) => call(`/api/v1/runs/${enc(id)}/attempts${query(params)}`),
  logs: (id, params) => call(`/api/v1/runs/${enc(id)}/logs${query(params)}`),
  explain: (id) => call(`/api/v1/runs/${enc(id)}/explain`),
  cancel: (id) => call(`/api/v1/runs/${enc(id)}/cancel`, { method: 'POST', body: {} }),
  retry: (id, task) => call(`/api/v1/runs/${enc(id)}/retry`, { method: 'POST', body: task ? { task } : {} }),
  submit: (body) => call('/api/v1/runs', { method: 'POST', body }),
  validate: (workflow) => call('/api/v1/workflows/validate', { method: 'POST', body: { workflow } }),
};

/** Roles in order: each may do what the ones before it may. */
const ROLES = ['viewer', 'operator', 'admin'];

/** Whether `role` may do what `needed` may. */
export function allows(role, needed) {
  return ROLES.indexOf(role) >= ROLES.indexOf(needed) && ROLES.includes(needed);
}
