// Host page: each check's measurement against its threshold (from the check's `details`),
// 7-day charts from `/series`, and the host's alerts with acknowledge / false-positive.

import { api } from './api.js';
import { ago, badge, bytes, duration, h, message, section, table, when } from './dom.js';
import { lineChart, timelineBar } from './chart.js';
import { alertActions, alertState } from './alerts.js';

const WEEK = 7 * 86400000;

/** [measurement, threshold] for a check, from the values behind its verdict. */
function measured(c) {
  const d = c.details || {};
  const kind = c.name.split('.')[0];
  if (kind === 'backup') {
    return [
      d.newest_age_secs !== undefined ? `newest ${duration(d.newest_age_secs)} old` : 'no backup file',
      d.max_age_secs !== undefined ? `at most ${duration(d.max_age_secs)}` : '—',
    ];
  }
  if (kind === 'disk') {
    return [
      d.used_pct !== undefined ? `${d.used_pct} % used (${bytes(d.used_bytes)} of ${bytes(d.total_bytes)})` : '—',
      d.warning_pct !== undefined ? `warning > ${d.warning_pct} %, critical > ${d.critical_pct} %` : '—',
    ];
  }
  if (kind === 'wal') {
    const delay = d.archive_delay_secs;
    return [
      `${delay === null || delay === undefined ? 'delay unknown' : `delay ${duration(delay)}`}; ` +
        `${d.ready_segments ?? '?'} waiting; ${d.failed_count ?? '?'} failures in total`,
      d.max_delay_secs !== undefined ? `delay at most ${duration(d.max_delay_secs)}; no failure` : '—',
    ];
  }
  if (kind === 'archive') {
    const who = [d.mode, d.owner && d.group ? `${d.owner}:${d.group}` : d.owner].filter(Boolean).join(' ');
    const want = [d.expected_mode, d.expected_owner].filter(Boolean).join(' ');
    return [
      `${d.segments ?? '?'} segments (${bytes(d.segment_bytes)}); oldest ${duration(d.retention_secs)} old` +
        `${who ? `; ${who}` : ''}`,
      `keep at least ${duration(d.min_retention_secs)}${want ? `; ${want}` : ''}`,
    ];
  }
  if (kind === 'drill') {
    const rto = d.rto_secs;
    return [
      rto === null || rto === undefined
        ? (d.refused ? 'refused: not enough space' : 'did not recover')
        : `RTO ${duration(Math.round(rto))}; ${bytes(d.bytes_restored)} restored, ${d.wal_segments_restored ?? 0} WAL segments` +
          `${d.recovered_at ? `; recovered to ${when(d.recovered_at)}` : ''}`,
      `${d.max_rto_secs ? `RTO at most ${duration(d.max_rto_secs)}; ` : ''}at most ${duration(d.max_shortfall_secs)} short of the ${d.target} target`,
    ];
  }
  return ['—', '—'];
}

function detailList(details) {
  if (!details || typeof details !== 'object') return null;
  const entries = Object.entries(details);
  if (!entries.length) return null;
  return h('details', {}, h('summary', {}, 'all values'),
    h('dl', { class: 'kv' }, entries.map(([k, v]) => [
      h('dt', {}, k),
      h('dd', {}, v === null ? '—' : typeof v === 'object' ? JSON.stringify(v) : String(v)),
    ])));
}

// How long "Run now" watches for the new result (a drill can take minutes; a file check
// answers within seconds), and how often it looks.
const RUN_WATCH_MS = 10 * 60 * 1000;
const RUN_POLL_MS = 1000;

/**
 * "Run now": asks the host's agent to run this probe at once (a re-check after a fix, a drill
 * on demand), then watches the check until a result newer than `observedAt` arrives and
 * redraws the page with it. Live events already redraw on a status change; this also shows a
 * result that changed nothing but its time and figures.
 */
function runNow(host, check, ctx, observedAt, redraw) {
  if (!ctx.canAck || check.startsWith('agent.')) return null;
  const status = h('span', { class: 'form-status', role: 'status' });
  const button = h('button', { type: 'button', class: 'run-now', 'data-run': check }, 'Run now');
  button.addEventListener('click', async () => {
    button.disabled = true;
    status.textContent = 'asking…';
    try {
      const asked = await api(`/api/v1/hosts/${encodeURIComponent(host)}/checks/${encodeURIComponent(check)}/run`, { method: 'POST' });
      // A refusal (already running, forced seconds ago) throws with the agent's reason.
      status.textContent = asked.agent === 'running' ? 'running: waiting for the result…' : 'asked: waiting for the result…';
      const deadline = Date.now() + RUN_WATCH_MS;
      while (Date.now() < deadline) {
        await new Promise((resolve) => { setTimeout(resolve, RUN_POLL_MS); });
        const now = await api(`/api/v1/hosts/${encodeURIComponent(host)}`);
        const c = (now.checks || []).find((x) => x.name === check);
        if (c && c.observed_at !== observedAt) {
          await redraw();
          return;
        }
      }
      status.textContent = 'no result yet: it arrives when the probe has run';
    } catch (e) {
      status.textContent = e.message;
    } finally {
      button.disabled = false;
    }
  });
  return h('span', { class: 'run-now-cell' }, button, ' ', status);
}

function checksTable(host, ctx, redraw) {
  const rows = host.checks.map((c) => {
    const [m, t] = measured(c);
    return h('tr', { 'data-check': c.name },
      h('th', { scope: 'row' }, c.name),
      h('td', {}, badge(c.status)),
      h('td', {}, m),
      h('td', {}, t),
      h('td', { class: 'summary-cell' }, h('div', {}, c.summary),
        c.procedure ? h('p', { class: 'procedure' }, h('strong', {}, 'What to do: '), c.procedure) : null,
        detailList(c.details)),
      h('td', { title: c.observed_at || '' }, ago(c.observed_at), ' ', runNow(host.host, c.name, ctx, c.observed_at, redraw)));
  });
  return table(['Check', 'Status', 'Measurement', 'Threshold', 'Summary', 'Measured'], rows, { class: 'checks' });
}

function chartFor(series, from, to) {
  const pts = series.points;
  if (series.measure === 'used_pct') {
    const lines = [];
    if (series.warning !== null) lines.push({ y: series.warning, cls: 's-warning', label: `warning ${series.warning} %` });
    if (series.critical !== null) lines.push({ y: series.critical, cls: 's-critical', label: `critical ${series.critical} %` });
    return lineChart({ points: pts, from, to, lines, yFormat: (v) => `${Math.round(v)} %`, yMax: 100, label: `${series.check}: disk used %` });
  }
  const hours = (v) => `${(v / 3600).toFixed(v < 36000 ? 1 : 0)} h`;
  if (series.measure === 'newest_backup_age_secs') {
    const lines = series.critical !== null ? [{ y: series.critical, cls: 's-critical', label: `limit ${duration(series.critical)}` }] : [];
    return lineChart({ points: pts, from, to, lines, yFormat: hours, label: `${series.check}: newest backup age` });
  }
  if (series.measure === 'archive_delay_secs') {
    const lines = series.critical !== null ? [{ y: series.critical, cls: 's-critical', label: `max ${duration(series.critical)}` }] : [];
    const bars = pts.filter((p) => p[3] > 0).map((p) => [p[0], p[3]]);
    const failed = bars.reduce((a, b) => a + b[1], 0);
    return lineChart({
      points: pts, from, to, lines, bars, yFormat: (v) => duration(v),
      label: `${series.check}: archive delay; ${failed} failed attempt${failed === 1 ? '' : 's'} (red ticks)`,
    });
  }
  if (series.measure === 'full_backup_duration_secs') {
    const lines = series.warning !== null ? [{ y: series.warning, cls: 's-warning', label: `max ${duration(series.warning)}` }] : [];
    return lineChart({ points: pts, from, to, lines, yFormat: (v) => duration(Math.round(v)), label: `${series.check}: how long the newest full backup took` });
  }
  if (series.measure === 'backup_size_bytes') {
    return lineChart({ points: pts, from, to, lines: [], yFormat: (v) => bytes(v), label: `${series.check}: newest backup size` });
  }
  if (series.measure === 'rto_secs') {
    const lines = series.warning !== null ? [{ y: series.warning, cls: 's-warning', label: `max RTO ${duration(series.warning)}` }] : [];
    return lineChart({ points: pts, from, to, lines, yFormat: (v) => duration(Math.round(v)), label: `${series.check}: recovery time (RTO) per drill` });
  }
  return null;
}

function charts(data) {
  const to = new Date(data.until).getTime();
  const from = Math.min(new Date(data.since).getTime(), to - WEEK);
  const figures = data.series.map((sr) => {
    const chart = chartFor(sr, from, to);
    if (!chart) return null;
    chart.setAttribute('data-check', sr.check);
    chart.setAttribute('data-measure', sr.measure);
    return h('figure', {}, chart,
      sr.sampled ? h('figcaption', { class: 'muted' }, 'many results: one sample per point') : null);
  });
  return figures.some(Boolean) ? figures : message('muted', 'No history in the last 7 days.');
}

/**
 * Per cluster: the recoverable window and the data at risk now (docs/checks.md R31, R32).
 * `silent`: the host's agent is silent, so its last figures are not "now": the data at risk is
 * then said as last measured, and not drawn as if it ended now.
 */
function recovery(clusters, now, silent) {
  if (!clusters.length) return message('muted', 'No WAL server or archive is watched on this host.');
  return clusters.map((c) => {
    const w = c.window;
    const start = w ? new Date(w.start).getTime() : null;
    const end = w ? new Date(w.end).getTime() : null;
    const from = Math.min(start ?? now, now - WEEK);
    const measured = c.data_at_risk_secs;
    const known = measured !== null && measured !== undefined;
    const stale = silent && known;
    const risk = stale ? null : measured;
    const riskText = !known
      ? 'data at risk: not known (see the WAL check)'
      : stale ? `data at risk: not known now, the agent is silent (${measured === 0 ? 'nothing' : duration(measured)} at risk when last measured, ${ago(c.wal_observed_at)})`
        : risk === 0 ? 'nothing at risk'
          : `data at risk ${duration(risk)}${c.max_data_at_risk_secs ? ` (limit ${duration(c.max_data_at_risk_secs)})` : ''}`;
    const windowText = w
      ? `restorable from ${when(w.start)} to ${when(w.end)}${w.cut_at ? ` — cut: ${w.cut_at} is missing` : ''}`
      : `no recoverable window${c.window_note ? `: ${c.window_note}` : ''}`;
    const d = c.drill;
    const drillAt = d && d.recovered_at ? new Date(d.recovered_at).getTime() : null;
    const drillText = !d ? 'not drilled (no restore drill recovered this cluster)'
      : `latest drill ${d.check} on ${d.host} (${when(d.at)}): ${drillAt !== null ? `recovered to ${when(d.recovered_at)}` : 'no point recovered'}${d.rto_secs !== null ? `, RTO ${duration(Math.round(d.rto_secs))}` : ''}`;
    const label = `${c.cluster}: ${windowText}; ${riskText}; ${drillText}`;
    return h('figure', { class: 'recovery', 'data-cluster': c.cluster },
      h('figcaption', {}, h('strong', {}, c.cluster), ' ', badge(c.status), ' ',
        h('span', { class: 'window-text' }, windowText), ' · ', h('span', { class: 'risk-text' }, riskText),
        h('br', {}), h('span', { class: 'drill-text' }, drillText), d ? [' ', badge(d.status)] : null),
      timelineBar({
        from: drillAt !== null ? Math.min(from, drillAt) : from, to: now, start, end, cut: Boolean(w && w.cut_at),
        riskSecs: risk ?? null, drillAt, drillStatus: d ? d.status : 'ok', label,
      }));
  });
}

function facts(host) {
  const skew = host.clock_skew_ms;
  return h('dl', { class: 'facts' },
    h('dt', {}, 'Last contact'), h('dd', { class: host.silent ? 'silent-cell' : null },
      host.silent ? [h('strong', {}, 'SILENT'), ' · '] : null, `${ago(host.last_contact)} (${when(host.last_contact)})`),
    h('dt', {}, 'First seen'), h('dd', {}, when(host.first_seen)),
    h('dt', {}, 'Agent'), h('dd', {}, host.agent_version || '—'),
    h('dt', {}, 'Clock skew'), h('dd', { class: host.clock_suspect ? 'warn-text' : null },
      `${(skew / 1000).toFixed(1)} s${host.clock_suspect ? ' — suspect: ages from this agent may be wrong' : ''}`),
    h('dt', {}, 'Groups'), h('dd', {}, (host.groups || []).join(', ') || '—'));
}

export function mount(main, ctx) {
  const name = ctx.params[0];
  const path = `/api/v1/hosts/${encodeURIComponent(name)}`;
  main.replaceChildren(h('h1', {}, name), message('muted', 'Loading…'));
  const view = {
    live: true,
    async refresh() {
      let host;
      try {
        host = await api(path);
      } catch (e) {
        main.replaceChildren(h('h1', {}, name), message('error', e.message));
        return;
      }
      const [series, open, resolved, clusters] = await Promise.all([
        api(`${path}/series?since=7d`),
        api('/api/v1/alerts?state=open&limit=5000'),
        api('/api/v1/alerts?state=resolved&limit=500'),
        api(`/api/v1/recovery?host=${encodeURIComponent(name)}`),
      ]);
      const mine = [...open, ...resolved].filter((a) => a.host === host.host);
      const alertRows = mine.map((a) => h('tr', { 'data-alert': a.id },
        h('td', {}, badge(a.severity)),
        h('th', { scope: 'row' }, a.check),
        h('td', {}, a.summary),
        h('td', { title: a.opened_at }, when(a.opened_at)),
        h('td', {}, alertState(a)),
        h('td', { class: 'actions' }, alertActions(a, ctx))));
      main.replaceChildren(
        h('h1', {}, host.host, ' ', badge(host.status)),
        facts(host),
        // Through the page's scheduler (one refresh at a time, none while someone types).
        section('Checks', checksTable(host, ctx, () => ctx.refresh())),
        section('Recovery', h('div', { class: 'recovery-list' }, recovery(clusters, Date.now(), host.silent))),
        section('Last 7 days', h('div', { class: 'charts' }, charts(series))),
        section('Alerts', mine.length
          ? table(['Severity', 'Check', 'Summary', 'Opened', 'State', ''], alertRows, { class: 'alerts' })
          : message('muted', 'No open or recent alert for this host.')));
      main.dataset.loadedAt = String(Date.now());
    },
  };
  return view;
}
