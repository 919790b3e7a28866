// Alerts page: open and recently resolved alerts with acknowledge and false-positive marks,
// silences with who, why and until when, and the configured recurring maintenance windows
// (open now, or when next). The action forms are shared with the host page.

import { api } from './api.js';
import { ago, badge, duration, h, message, section, table, when } from './dom.js';

/** Words for an alert's state: open/resolved, and its marks. */
export function alertState(a) {
  const parts = [a.state === 'open' ? `open ${duration(a.duration_secs)}` : `resolved after ${duration(a.duration_secs)}`];
  if (a.flapping) parts.push('flapping');
  if (a.silenced) parts.push('silenced');
  const out = [h('div', {}, parts.join(' · '))];
  if (a.acknowledged) {
    out.push(h('div', { class: 'mark' }, `acknowledged by ${a.acknowledged.by}${a.acknowledged.comment ? `: ${a.acknowledged.comment}` : ''}`));
  }
  if (a.false_positive) {
    out.push(h('div', { class: 'mark' }, `false positive (${a.false_positive.by}${a.false_positive.comment ? `: ${a.false_positive.comment}` : ''})`));
  }
  return out;
}

/** A form posting `{by, comment}` to `url`; the comment survives live redraws via `ctx.drafts`. */
function markForm(ctx, key, url, label, placeholder) {
  const comment = h('input', { type: 'text', name: 'comment', placeholder, maxlength: 2000, value: ctx.drafts.get(key) || '', 'aria-label': `${label} comment` });
  comment.addEventListener('input', () => ctx.drafts.set(key, comment.value));
  const status = h('span', { class: 'form-status', role: 'status' });
  const button = h('button', { type: 'submit' }, label);
  const form = h('form', { class: 'draft mark-form', 'data-action': key.split(':')[0] }, comment, ' ', button, ' ', status);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const by = ctx.by();
    if (!by) {
      status.textContent = 'Enter your name at the top first.';
      document.getElementById('by').focus();
      return;
    }
    button.disabled = true;
    status.textContent = 'saving…';
    try {
      await api(url, { method: 'POST', body: { by, comment: comment.value.trim() } });
      ctx.drafts.delete(key);
      status.textContent = 'saved';
      ctx.refresh();
    } catch (e) {
      status.textContent = e.message;
      button.disabled = false;
    }
  });
  return form;
}

/** Acknowledge (open, not yet) or false positive (resolved, not yet), when allowed. */
export function alertActions(a, ctx) {
  if (!ctx.canAck) return null;
  if (a.state === 'open' && !a.acknowledged) {
    return markForm(ctx, `ack:${a.id}`, `/api/v1/alerts/${a.id}/ack`, 'Acknowledge', 'comment (optional)');
  }
  if (a.state === 'resolved' && !a.false_positive) {
    return markForm(ctx, `fp:${a.id}`, `/api/v1/alerts/${a.id}/false-positive`, 'False positive', 'why it was not real');
  }
  return null;
}

function silenceForm(ctx, prefill) {
  const field = (name, placeholder, extra = {}) => {
    const key = `silence:${name}`;
    const input = h('input', { type: 'text', name, placeholder, value: prefill[name] || ctx.drafts.get(key) || '', ...extra });
    input.addEventListener('input', () => ctx.drafts.set(key, input.value));
    return input;
  };
  const host = field('host', 'host or pattern (db-*)', { 'aria-label': 'host' });
  const group = field('group', 'group', { 'aria-label': 'group' });
  const check = field('check', 'check or pattern (wal.*)', { 'aria-label': 'check' });
  const until = field('until', 'for (2h) or until (RFC 3339)', { 'aria-label': 'until', required: true });
  const reason = field('reason', 'reason (required)', { 'aria-label': 'reason', required: true, size: 40, maxlength: 2000 });
  const status = h('span', { class: 'form-status', role: 'status' });
  const form = h('form', { class: 'draft silence-form' }, host, group, check, until, reason,
    h('button', { type: 'submit' }, 'Add silence'), ' ', status);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const by = ctx.by();
    if (!by) {
      status.textContent = 'Enter your name at the top first.';
      return;
    }
    const body = { by, reason: reason.value.trim(), until: until.value.trim() };
    for (const [k, el] of [['host', host], ['group', group], ['check', check]]) if (el.value.trim()) body[k] = el.value.trim();
    try {
      await api('/api/v1/silences', { method: 'POST', body });
      for (const k of ['host', 'group', 'check', 'until', 'reason']) ctx.drafts.delete(`silence:${k}`);
      prefill.host = '';
      prefill.check = '';
      status.textContent = 'added';
      ctx.refresh();
    } catch (e) {
      status.textContent = e.message;
    }
  });
  return form;
}

function silenceRows(silences, ctx) {
  return silences.map((sl) => {
    const what = [sl.host && `host ${sl.host}`, sl.group && `group ${sl.group}`, sl.check && `check ${sl.check}`].filter(Boolean).join(', ');
    const end = ctx.canAck
      ? h('button', {
        type: 'button',
        on: {
          click: async (ev) => {
            ev.target.disabled = true;
            try {
              await api(`/api/v1/silences/${sl.id}?by=${encodeURIComponent(ctx.by() || ctx.session.name)}`, { method: 'DELETE' });
              ctx.refresh();
            } catch (e) {
              ev.target.textContent = e.message;
            }
          },
        },
      }, 'End now')
      : null;
    return h('tr', { 'data-silence': sl.id },
      h('td', {}, what), h('td', {}, sl.reason), h('td', {}, sl.created_by),
      h('td', {}, when(sl.starts_at)), h('td', {}, `${when(sl.ends_at)} (${ago(sl.ends_at)})`), h('td', {}, end));
  });
}

// The collector's [[maintenance]] windows: what each covers, when (in its own time zone), and
// whether it is open now or when it opens next. Read only: they live in the configuration.
function windowRows(windows) {
  return windows.map((w) => {
    const covers = [
      w.hosts.length && `hosts ${w.hosts.join(', ')}`,
      w.groups.length && `groups ${w.groups.join(', ')}`,
      w.checks.length && `checks ${w.checks.join(', ')}`,
    ].filter(Boolean).join('; ') || 'everything';
    const days = w.every.length === 7 ? 'every day' : w.every.join(', ');
    const state = w.open
      ? `open until ${when(w.current.ends_at)}`
      : (w.next ? `next ${when(w.next.starts_at)}` : '');
    return h('tr', { 'data-window': w.name, class: w.open ? 'open' : '' },
      h('th', { scope: 'row' }, w.name), h('td', {}, covers),
      h('td', {}, `${days} ${w.from.slice(0, 5)}–${w.to.slice(0, 5)} ${w.timezone}`),
      h('td', {}, w.reason), h('td', { class: 'window-state' }, state));
  });
}

export function mount(main, ctx) {
  const prefill = {};
  main.replaceChildren(h('h1', {}, 'Alerts'), message('muted', 'Loading…'));
  const view = {
    live: true,
    async refresh() {
      const [open, resolved, silences, windows] = await Promise.all([
        api('/api/v1/alerts?state=open&limit=1000'),
        api('/api/v1/alerts?state=resolved&limit=100'),
        api('/api/v1/silences'),
        api('/api/v1/maintenance'),
      ]);
      const row = (a) => h('tr', { 'data-alert': a.id },
        h('td', {}, badge(a.severity)),
        h('th', { scope: 'row' }, h('a', { href: `/hosts/${encodeURIComponent(a.host)}` }, a.host)),
        h('td', {}, a.check),
        h('td', {}, a.summary),
        h('td', { title: a.opened_at }, when(a.opened_at)),
        h('td', {}, alertState(a)),
        h('td', { class: 'actions' }, alertActions(a, ctx),
          a.state === 'open' && ctx.canAck ? h('button', {
            type: 'button',
            class: 'link',
            on: {
              click: () => {
                prefill.host = a.host;
                prefill.check = a.check;
                view.refresh();
              },
            },
          }, 'Silence…') : null));
      const head = ['Severity', 'Host', 'Check', 'Summary', 'Opened', 'State', ''];
      main.replaceChildren(
        h('h1', {}, 'Alerts'),
        section(`Open (${open.length})`, open.length
          ? table(head, open.map(row), { class: 'alerts open' })
          : message('muted', 'No open alert.')),
        section('Silences', ctx.canAck ? silenceForm(ctx, prefill) : null,
          silences.length
            ? table(['Matches', 'Reason', 'By', 'Starts', 'Ends', ''], silenceRows(silences, ctx), { class: 'silences' })
            : message('muted', 'No active or upcoming silence.')),
        ...(windows.length
          ? [section('Maintenance windows',
            table(['Window', 'Covers', 'When', 'Reason', ''], windowRows(windows), { class: 'maintenance' }))]
          : []),
        section('Recently resolved', resolved.length
          ? table(head, resolved.map(row), { class: 'alerts resolved' })
          : message('muted', 'Nothing resolved yet.')));
      main.dataset.loadedAt = String(Date.now());
    },
  };
  return view;
}
