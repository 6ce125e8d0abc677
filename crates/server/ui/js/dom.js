// Small DOM helpers: building elements, and formatting times and JSON.

/**
 * Builds an element: h('a', {href: '#/'}, 'text', child).
 * Attributes starting with `on` are listeners; `class` and `dataset` work as
 * expected; null/false attributes and children are left out. Text is always
 * set as text, never parsed as HTML.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

/** Builds an SVG element (same rules as `h`). */
export function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else if (key === 'dataset') {
      Object.assign(el.dataset, value);
    } else if (key === 'style') {
      Object.assign(el.style, value); // CSSOM: allowed by the page's CSP
    } else {
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
}

/** Replaces everything in `el` with `children`. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A status badge. */
export function badge(status) {
  return h('span', { class: `badge st-${status}` }, status);
}

/** "2024-05-01 12:00:03" in the browser's time zone, with the ISO time as a tooltip. */
export function time(iso) {
  if (!iso) return h('span', { class: 'muted' }, '—');
  const d = new Date(iso);
  const pad = (n) => String(n).padStart(2, '0');
  const text = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  return h('time', { datetime: iso, title: iso }, text);
}

/** "1.2 s", "3 m 04 s", "2 h 05 m" between two instants (to now when `to` is missing). */
export function duration(from, to) {
  if (!from) return '—';
  return millis(Math.max(0, (to ? Date.parse(to) : Date.now()) - Date.parse(from)));
}

/** "850 ms", "1.2 s", "3 m 04 s", "2 h 05 m". */
export function millis(ms) {
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const sec = Math.floor(ms / 1000);
  if (sec < 3600) return `${Math.floor(sec / 60)} m ${String(sec % 60).padStart(2, '0')} s`;
  return `${Math.floor(sec / 3600)} h ${String(Math.floor((sec % 3600) / 60)).padStart(2, '0')} m`;
}

/** JSON shown in a <pre>, or a dash for nothing. */
export function json(value) {
  if (value === null || value === undefined) return h('span', { class: 'muted' }, '—');
  return h('pre', { class: 'json' }, JSON.stringify(value, null, 2));
}

/** A short message at the bottom of the screen. */
export function toast(text, kind = 'info') {
  const el = document.getElementById('toast');
  const item = h('div', { class: `toast ${kind}` }, text);
  el.append(item);
  setTimeout(() => item.remove(), 6000);
}

/** Whether a run or task status is final. */
export function terminal(status) {
  return ['succeeded', 'failed', 'canceled', 'skipped', 'timed_out'].includes(status);
}

/**
 * A run id to show: whole on wide screens; on narrow ones its end (run ids
 * are UUIDv7, whose first digits are the time and alike for runs made
 * together). The whole id is the tooltip.
 */
export function runId(id) {
  const text = String(id);
  return h('span', { class: 'mono run-id', title: text }, h('span', { class: 'id-head' }, text.slice(0, 24)), text.slice(24));
}

/** The distinctive end of a run id, for titles: "…9ed1b64765d8". */
export function idTail(id) {
  return `…${String(id).slice(-12)}`;
}
