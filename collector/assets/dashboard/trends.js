// Trends page: fleet storage over time, per-host growth with the projected full date
// (Theil–Sen slope, computed by the collector), WAL archive volume per day, alerts per day.
// Not live: the collector caches trends for a minute; the page redraws every minute anyway.

import { api } from './api.js';
import { bytes, h, message, section, table, when } from './dom.js';
import { barChart, lineChart, sparkline } from './chart.js';

const DAY = 86400000;

function perHost(storage) {
  const order = (x) => (x.projected_full_at ? new Date(x.projected_full_at).getTime() : Infinity);
  const rows = [...storage]
    .sort((a, b) => (order(a) - order(b)) || ((b.used_pct ?? 0) - (a.used_pct ?? 0)) || a.host.localeCompare(b.host))
    .map((x) => h('tr', { 'data-host': x.host, 'data-check': x.check },
      h('th', { scope: 'row' }, h('a', { href: `/hosts/${encodeURIComponent(x.host)}` }, x.host)),
      h('td', {}, `${x.check} ${x.path}`),
      h('td', { class: 'num' }, x.used_pct === null ? '—' : `${x.used_pct} %`),
      h('td', { class: 'num' }, x.growth_bytes_per_day === null ? '—' : `${bytes(x.growth_bytes_per_day)}/day`),
      h('td', { class: x.projected_full_at ? 'warn-text' : null },
        x.projected_full_at ? `${when(x.projected_full_at).slice(0, 10)} (${x.projection})` : x.projection),
      h('td', {}, sparkline(x.points.map((p) => [p[0], p[1]])))));
  return table(['Host', 'Filesystem', 'Used', 'Growth', 'Projected full', `Used, ${storage.length ? 'daily' : ''}`], rows, { class: 'trends' });
}

export function mount(main) {
  const q = new URLSearchParams(window.location.search);
  let days = Number(q.get('days')) || 30;
  const pick = h('select', { 'aria-label': 'Window' },
    [7, 30, 90, 365].map((d) => h('option', { value: d, selected: d === days }, `last ${d} days`)));
  const body = h('div', {}, message('muted', 'Loading…'));
  main.replaceChildren(h('h1', {}, 'Trends ', pick), body);
  const view = {
    live: false,
    async refresh() {
      const t = await api(`/api/v1/trends?days=${days}`);
      const from = new Date(t.since).getTime();
      const to = from + t.days * DAY;
      const fleet = t.fleet_storage.filter((p) => p[2] > 0);
      const fleetChart = fleet.length
        ? lineChart({
          points: fleet.map((p) => [p[0], p[1]]),
          from, to,
          lines: [{ y: fleet[fleet.length - 1][2], cls: 's-critical', label: `capacity ${bytes(fleet[fleet.length - 1][2])}` }],
          yFormat: bytes,
          label: 'used, summed over every disk check',
        })
        : message('muted', 'No disk results in this window.');
      body.replaceChildren(
        h('div', { class: 'trend-grid' },
          section('Fleet storage', fleetChart),
          section('WAL archived per day',
            barChart({ days: t.archive_per_day.map((p) => [p[0], [p[1]]]), classes: ['s-ok'], yFormat: bytes, label: 'archived_count growth × segment size' })),
          section('Alerts opened per day',
            barChart({ days: t.alerts_per_day.map((p) => [p[0], [p[2], p[1]]]), classes: ['s-critical', 's-warning'], label: 'critical (lower) and warning (upper)' }),
            t.alerts_truncated ? message('muted', 'More alerts than were counted: the oldest days may be low.') : null)),
        section('Per filesystem, soonest full first', t.storage.length ? perHost(t.storage) : message('muted', 'No disk results in this window.'),
          h('p', { class: 'muted' }, 'Projected full date: the Theil–Sen slope (median of the slopes between every two daily samples, robust to cleanups and spikes) ',
            'of used bytes over the window, counted from the latest measured use up to the capacity (used + available). ',
            'At least 3 daily samples are needed.')),
        h('p', { class: 'muted' }, `Computed ${when(t.generated_at)}; one sample per UTC day, the day's last.`));
      main.dataset.loadedAt = String(Date.now());
    },
  };
  pick.addEventListener('change', () => {
    days = Number(pick.value);
    window.history.replaceState(null, '', `/trends?days=${days}`);
    view.refresh();
  });
  return view;
}
