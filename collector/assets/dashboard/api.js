// Talking to the collector: JSON requests carrying the session's token, and the live event
// stream. The token lives in sessionStorage only (gone with the tab), never in a URL.

const TOKEN_KEY = 'backwatch.token';

export function token() {
  return sessionStorage.getItem(TOKEN_KEY) || '';
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

export class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function headers(accept) {
  const out = { Accept: accept };
  const t = token();
  if (t) out.Authorization = `Bearer ${t}`;
  return out;
}

/** `GET path`, or another method with a JSON body; resolves to the JSON answer. */
export async function api(path, options = {}) {
  const init = { method: options.method || 'GET', headers: headers('application/json'), cache: 'no-store' };
  if (options.body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(options.body);
  }
  const r = await fetch(path, init);
  let data = null;
  try {
    data = await r.json();
  } catch (_) {
    data = null;
  }
  if (!r.ok) {
    const msg = data && typeof data.error === 'string' ? data.error : `${r.status} ${r.statusText}`;
    throw new HttpError(r.status, msg);
  }
  return data;
}

const sleep = (ms) => new Promise((res) => { setTimeout(res, ms); });

/**
 * Follows `/api/v1/events` (Server-Sent Events) and calls `onEvent(name, data)` per event,
 * `onState('live' | 'offline' | 'login')` as the connection changes; reconnects with backoff.
 * Read with fetch rather than EventSource because EventSource cannot send the token header.
 */
export function follow(onEvent, onState) {
  let delay = 1000;
  async function once() {
    const r = await fetch('/api/v1/events', { headers: headers('text/event-stream'), cache: 'no-store' });
    if (!r.ok || !r.body) throw new HttpError(r.status, `events: ${r.status}`);
    const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    let event = '';
    let data = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += value;
      let nl = buf.indexOf('\n');
      while (nl >= 0) {
        let line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.endsWith('\r')) line = line.slice(0, -1);
        if (line === '') {
          if (event || data) {
            if (event === 'ready') {
              delay = 1000;
              onState('live');
            }
            onEvent(event || 'message', data);
          }
          event = '';
          data = '';
        } else if (!line.startsWith(':')) {
          const c = line.indexOf(':');
          const field = c < 0 ? line : line.slice(0, c);
          let val = c < 0 ? '' : line.slice(c + 1);
          if (val.startsWith(' ')) val = val.slice(1);
          if (field === 'event') event = val;
          else if (field === 'data') data = data ? `${data}\n${val}` : val;
        }
        nl = buf.indexOf('\n');
      }
    }
  }
  (async () => {
    for (;;) {
      try {
        await once();
      } catch (e) {
        if (e instanceof HttpError && (e.status === 401 || e.status === 403)) {
          onState('login');
          return;
        }
      }
      onState('offline');
      await sleep(delay);
      delay = Math.min(delay * 2, 15000);
    }
  })();
}
