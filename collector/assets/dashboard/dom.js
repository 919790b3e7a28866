// Building the page. Invariant: data reaches the DOM only as text nodes (`textContent`) or
// attribute values (`setAttribute`), never as markup; the page's Content-Security-Policy
// (Trusted Types) makes every HTML-parsing sink throw, so a slip fails loudly instead of
// rendering a host's text as HTML.

const SVG_NS = 'http://www.w3.org/2000/svg';

function build(el, attrs, children) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'on') {
      for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
    } else if (k === 'text') {
      el.textContent = String(v);
    } else {
      el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** An HTML element: `h('a', {href: '/x', class: 'y'}, 'text', child, ...)`. */
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** An SVG element, same calling convention as `h`. */
export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

export const STATUSES = ['critical', 'unknown', 'warning', 'ok'];
/** Worst-first order, as the collector's `Status::rank`. */
export const RANK = { ok: 0, warning: 1, unknown: 2, critical: 3 };
const SYMBOL = { ok: '✓', warning: '▲', critical: '✖', unknown: '?' };

/** A known status, or `unknown` for anything else (never used as a class name unchecked). */
export function known(status) {
  return Object.hasOwn(RANK, status) ? status : 'unknown';
}

/** Status as a symbol and a word on its colour: readable without colour vision. */
export function badge(status, title) {
  const st = known(status);
  return h('span', { class: `badge s-${st}`, title: title || null, 'data-status': st },
    h('span', { class: 'sym', 'aria-hidden': 'true' }, SYMBOL[st]), ' ', st);
}

export function pad(n) {
  return String(n).padStart(2, '0');
}

/** Local time `YYYY-MM-DD HH:MM` of an ISO time or Unix ms; `—` for none. */
export function when(t) {
  if (t === null || t === undefined) return '—';
  const d = new Date(t);
  if (Number.isNaN(d.getTime())) return '—';
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** `2 d 3 h`, `12 min`, `40 s`. */
export function duration(secs) {
  if (secs === null || secs === undefined || !Number.isFinite(secs)) return '—';
  const neg = secs < 0;
  let v = Math.abs(Math.round(secs));
  let out;
  if (v < 120) out = `${v} s`;
  else if (v < 7200) out = `${Math.round(v / 60)} min`;
  else if (v < 172800) {
    const hrs = Math.floor(v / 3600);
    const min = Math.round((v % 3600) / 60);
    out = min ? `${hrs} h ${min} min` : `${hrs} h`;
  } else {
    const d = Math.floor(v / 86400);
    const hrs = Math.round((v % 86400) / 3600);
    out = hrs ? `${d} d ${hrs} h` : `${d} d`;
  }
  return neg ? `-${out}` : out;
}

/** Age of a time, `5 min ago`. */
export function ago(t) {
  if (!t) return '—';
  const ms = Date.now() - new Date(t).getTime();
  if (!Number.isFinite(ms)) return '—';
  return ms < 0 ? `in ${duration(-ms / 1000)}` : `${duration(ms / 1000)} ago`;
}

export function bytes(n) {
  if (n === null || n === undefined || !Number.isFinite(n)) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = Math.abs(n);
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${n < 0 ? '-' : ''}${v >= 100 || i === 0 ? v.toFixed(0) : v.toFixed(1)} ${units[i]}`;
}

/** A section with a heading. */
export function section(title, ...children) {
  return h('section', { class: 'card' }, h('h2', {}, title), ...children);
}

/** A table from a header row and rows of cells (strings or nodes). */
export function table(head, rows, attrs) {
  return h('table', attrs || {},
    h('thead', {}, h('tr', {}, head.map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, rows));
}

export function message(kind, text) {
  return h('p', { class: kind, role: kind === 'error' ? 'alert' : null }, text);
}
