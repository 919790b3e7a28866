// Fleet page: every host × check, worst first, filtered by group, label, status and name. One
// request (`/api/v1/hosts?details=false`) whatever the fleet's size; filters live in the URL
// so a filtered view can be bookmarked and survives a reload.

import { api } from './api.js';
import { ago, badge, h, known, message, RANK, table } from './dom.js';

function readFilters() {
  const q = new URLSearchParams(window.location.search);
  return {
    name: q.get('name') || '', group: q.get('group') || '', label: q.get('label') || '', status: q.get('status') || '',
  };
}

function writeFilters(f) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(f)) if (v) q.set(k, v);
  const qs = q.toString();
  window.history.replaceState(null, '', qs ? `/?${qs}` : '/');
}

function matches(host, f) {
  if (f.name && !host.host.toLowerCase().includes(f.name.toLowerCase())) return false;
  if (f.group && !(host.groups || []).includes(f.group)) return false;
  if (f.label && !labelPairs(host).includes(f.label)) return false;
  if (f.status === 'silent') return host.silent;
  if (f.status === 'not-ok') return host.status !== 'ok';
  if (f.status) return host.status === f.status;
  return true;
}

// A host's labels as `name=value` texts, the filter's values (and the API's selector form).
function labelPairs(host) {
  return Object.entries(host.labels || {}).map(([k, v]) => `${k}=${v}`);
}

function worstFirst(a, b) {
  return (RANK[known(b.status)] - RANK[known(a.status)]) ||
    (Number(b.silent) - Number(a.silent)) ||
    a.host.localeCompare(b.host);
}

function contact(host) {
  if (host.silent) {
    return h('td', { class: 'contact silent-cell' },
      h('strong', {}, 'SILENT'), ` · last contact ${ago(host.last_contact)}`);
  }
  return h('td', { class: 'contact', title: host.last_contact }, ago(host.last_contact));
}

function row(host, columns) {
  const byName = new Map(host.checks.map((c) => [c.name, c]));
  const href = `/hosts/${encodeURIComponent(host.host)}`;
  return h('tr', { 'data-host': host.host, class: host.silent ? 'silent' : null },
    h('th', { scope: 'row' }, h('a', { href }, host.host),
      (host.groups || []).length ? h('span', { class: 'groups' }, ` ${host.groups.join(', ')}`) : null,
      labelPairs(host).length ? h('span', { class: 'labels' }, ` ${labelPairs(host).join(' ')}`) : null),
    h('td', {}, badge(host.status)),
    contact(host),
    columns.map((name) => {
      const c = byName.get(name);
      if (!c) return h('td', { class: 'none', 'data-check': name }, '—');
      return h('td', { 'data-check': name, title: `${name}: ${c.summary}` }, badge(c.status));
    }));
}

function summary(hosts, showSilent) {
  const counts = { critical: 0, unknown: 0, warning: 0, ok: 0 };
  let silent = 0;
  for (const x of hosts) {
    counts[known(x.status)] += 1;
    if (x.silent) silent += 1;
  }
  return h('p', { class: 'summary' },
    `${hosts.length} host${hosts.length === 1 ? '' : 's'}: `,
    ['critical', 'unknown', 'warning', 'ok'].map((st) => [badge(st), ` ${counts[st]}  `]),
    silent ? h('button', { type: 'button', class: 'silent-note', title: 'show only silent agents', on: { click: showSilent } },
      `${silent} agent${silent === 1 ? '' : 's'} silent`) : null);
}

export function mount(main, ctx) {
  const f = readFilters();
  let hosts = [];
  let loaded = false;
  const nameIn = h('input', { type: 'search', placeholder: 'host name contains…', value: f.name, 'aria-label': 'Filter by name' });
  const groupSel = h('select', { 'aria-label': 'Filter by group' }, h('option', { value: '' }, 'all groups'));
  const labelSel = h('select', { 'aria-label': 'Filter by label' }, h('option', { value: '' }, 'all labels'));
  const statusSel = h('select', { 'aria-label': 'Filter by status' },
    [['', 'any status'], ['not-ok', 'not ok'], ['critical', 'critical'], ['unknown', 'unknown'],
      ['warning', 'warning'], ['ok', 'ok'], ['silent', 'silent agents']]
      .map(([v, t]) => h('option', { value: v, selected: v === f.status }, t)));
  const head = h('div', { class: 'summary-wrap' });
  const body = h('div', { class: 'fleet-table' }, message('muted', 'Loading…'));
  main.replaceChildren(
    h('h1', {}, 'Fleet'),
    h('form', { class: 'filters', role: 'search', on: { submit: (e) => e.preventDefault() } },
      nameIn, ' ', groupSel, ' ', labelSel, ' ', statusSel),
    head, body);

  function render() {
    if (!loaded) return;
    const groups = [...new Set(hosts.flatMap((x) => x.groups || []))].sort();
    const chosen = f.group;
    // replaceChildren takes nodes, not arrays: spread them (an array would become its text).
    groupSel.replaceChildren(h('option', { value: '' }, 'all groups'),
      ...groups.map((g) => h('option', { value: g, selected: g === chosen }, g)));
    const pairs = [...new Set(hosts.flatMap(labelPairs))].sort();
    labelSel.replaceChildren(h('option', { value: '' }, 'all labels'),
      ...pairs.map((p) => h('option', { value: p, selected: p === f.label }, p)));
    const columns = [...new Set(hosts.flatMap((x) => x.checks.map((c) => c.name)))].sort();
    const shown = hosts.filter((x) => matches(x, f)).sort(worstFirst);
    head.replaceChildren(summary(hosts, () => {
      statusSel.value = 'silent';
      onFilter();
    }));
    if (!hosts.length) {
      body.replaceChildren(message('muted', 'No agent has reported yet.'));
      return;
    }
    const grid = table(['Host', 'Status', 'Last contact', ...columns], shown.map((x) => row(x, columns)),
      { class: 'fleet', 'data-rows': shown.length });
    if (shown.length) body.replaceChildren(grid);
    else body.replaceChildren(grid, message('muted', 'No host matches the filters.'));
  }

  const onFilter = () => {
    f.name = nameIn.value.trim();
    f.group = groupSel.value;
    f.label = labelSel.value;
    f.status = statusSel.value;
    writeFilters(f);
    render();
  };
  nameIn.addEventListener('input', onFilter);
  groupSel.addEventListener('change', onFilter);
  labelSel.addEventListener('change', onFilter);
  statusSel.addEventListener('change', onFilter);

  return {
    live: true,
    async refresh() {
      hosts = await api('/api/v1/hosts?details=false');
      loaded = true;
      render();
      main.dataset.loadedAt = String(Date.now());
    },
  };
}
