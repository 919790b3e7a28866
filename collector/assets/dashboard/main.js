// Entry point: session (login when the collector asks for a token), routing by path, and
// live refresh. Pages are modules exporting `mount(main, ctx)` that return
// `{ refresh(), live }`; `refresh` refetches and redraws, `live` says whether server events
// should trigger it.
//
// Refresh invariants: one refresh runs at a time, requests arriving meanwhile coalesce into
// one more, and refreshes start at least MIN_GAP_MS apart; while someone types in an action
// form (class `draft`) the redraw waits, so a live update never eats a half-written comment.

import { api, follow, HttpError, setToken, token } from './api.js';
import { h, message } from './dom.js';
import * as fleet from './fleet.js';
import * as host from './host.js';
import * as alerts from './alerts.js';
import * as trends from './trends.js';

const BY_KEY = 'backwatch.by';
/** Redraw anyway this often, so ages ("5 min ago") and silent agents stay current. */
const REFRESH_EVERY_MS = 60000;
/** Shortest time between two refreshes. */
const MIN_GAP_MS = 1000;
/** Load without the event stream after this long. */
const FIRST_LOAD_WAIT_MS = 2000;

const ROUTES = [
  [/^\/$/, 'fleet', fleet],
  [/^\/hosts\/([^/]+)$/, 'fleet', host],
  [/^\/alerts$/, 'alerts', alerts],
  [/^\/trends$/, 'trends', trends],
];

function byField() {
  const input = document.getElementById('by');
  input.value = localStorage.getItem(BY_KEY) || '';
  input.addEventListener('change', () => localStorage.setItem(BY_KEY, input.value.trim()));
  return () => input.value.trim();
}

function showLogin(main, problem) {
  const field = h('input', { id: 'token', type: 'password', autocomplete: 'current-password', required: true, size: 48 });
  const form = h('form', { class: 'card login' },
    h('h2', {}, 'Sign in'),
    h('p', {}, 'This collector requires an access token (ask whoever runs it; see [[http.tokens]] in its configuration).'),
    problem ? message('error', problem) : null,
    h('label', {}, 'Token ', field),
    ' ',
    h('button', { type: 'submit' }, 'Sign in'));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    setToken(field.value.trim());
    window.location.reload();
  });
  main.replaceChildren(form);
  field.focus();
}

function scheduler(run, main) {
  let running = false;
  let pending = false;
  let lastStart = 0;
  const typing = () => {
    const a = document.activeElement;
    return a && main.contains(a) && a.closest('.draft') && (a.value || '') !== '';
  };
  async function loop() {
    running = true;
    while (pending) {
      if (typing()) {
        await new Promise((res) => { main.addEventListener('focusout', res, { once: true }); });
        continue;
      }
      // A busy fleet changes every second: redraw at most once per MIN_GAP_MS.
      const wait = lastStart + MIN_GAP_MS - Date.now();
      if (wait > 0) await new Promise((res) => { setTimeout(res, wait); });
      pending = false;
      lastStart = Date.now();
      try {
        await run();
      } catch (e) {
        console.error('refresh failed', e);
      }
    }
    running = false;
  }
  return () => {
    pending = true;
    if (!running) loop();
  };
}

async function start() {
  const main = document.getElementById('main');
  const liveEl = document.getElementById('live');
  const setLive = (state) => {
    liveEl.dataset.state = state;
    liveEl.textContent = { live: 'live', offline: 'reconnecting', login: 'signed out', connecting: 'connecting' }[state] || state;
  };
  const by = byField();
  let session;
  try {
    session = await api('/api/v1/session');
  } catch (e) {
    if (e instanceof HttpError && e.status === 401) {
      setLive('login');
      showLogin(main, token() ? 'That token was not accepted.' : null);
      return;
    }
    main.replaceChildren(message('error', `The collector did not answer: ${e.message}`));
    return;
  }
  const sessionEl = document.getElementById('session');
  sessionEl.textContent = session.auth === 'open'
    ? 'open access (loopback)'
    : `${session.name} · ${session.role === 'admin' ? 'administrator' : session.role === 'ack' ? 'may acknowledge' : 'read-only'}`;
  const byInput = document.getElementById('by');
  if (!byInput.value && session.auth !== 'open') byInput.value = session.name;
  if (token()) {
    const out = document.getElementById('logout');
    out.hidden = false;
    out.addEventListener('click', () => {
      setToken('');
      window.location.reload();
    });
  }

  const path = window.location.pathname;
  const route = ROUTES.find(([re]) => re.test(path));
  if (!route) {
    main.replaceChildren(message('error', 'No such page.'), h('a', { href: '/' }, 'Fleet'));
    return;
  }
  const [re, nav, page] = route;
  for (const a of document.querySelectorAll('[data-nav]')) {
    if (a.dataset.nav === nav) a.setAttribute('aria-current', 'page');
  }
  const ctx = {
    params: path.match(re).slice(1).map(decodeURIComponent),
    session,
    by,
    canAck: session.role === 'ack' || session.role === 'admin',
    drafts: new Map(),
    refresh: () => {},
  };
  const view = page.mount(main, ctx);
  const refresh = scheduler(view.refresh, main);
  ctx.refresh = refresh;
  // The first load waits for the event stream to be subscribed, so every change committed
  // after that load is announced (and a large fleet is fetched once, not twice). A proxy that
  // blocks the stream only delays it.
  let loaded = false;
  const first = () => {
    if (!loaded) {
      loaded = true;
      refresh();
    }
  };
  follow((event) => {
    if (!loaded) first();
    // `ready` after a reconnection: whatever happened while disconnected is fetched.
    else if (view.live && (event === 'changed' || event === 'ready')) refresh();
  }, setLive);
  setTimeout(first, FIRST_LOAD_WAIT_MS);
  setInterval(refresh, REFRESH_EVERY_MS);
}

start();
