// Charts as inline SVG built with DOM calls: a time line chart with threshold lines, stacked
// bars per day, and sparklines. Each chart carries `data-first`, `data-last` (Unix ms of its
// first and last point) and `data-count`, so what it shows can be checked without pixels.

import { s, pad, known } from './dom.js';

const W = 720;
const H = 190;
const M = { left: 60, right: 12, top: 22, bottom: 24 };
const DAY = 86400000;

function scale(d0, d1, r0, r1) {
  const span = d1 - d0 || 1;
  return (v) => r0 + ((v - d0) / span) * (r1 - r0);
}

function dayLabel(ms) {
  const d = new Date(ms);
  return `${['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'][d.getDay()]} ${pad(d.getDate())}`;
}

/** Local midnights between two times. */
function midnights(from, to) {
  const out = [];
  const d = new Date(from);
  d.setHours(24, 0, 0, 0);
  while (d.getTime() <= to && out.length < 400) {
    out.push(d.getTime());
    d.setDate(d.getDate() + 1);
  }
  return out;
}

function frame(x, y, from, to, yMax, yFormat, label) {
  const g = s('g', { class: 'axes' });
  g.append(s('rect', { x: M.left, y: M.top, width: W - M.left - M.right, height: H - M.top - M.bottom, class: 'plot' }));
  const days = midnights(from, to);
  const step = Math.max(1, Math.ceil(days.length / 10));
  days.forEach((t, i) => {
    g.append(s('line', { x1: x(t), x2: x(t), y1: M.top, y2: H - M.bottom, class: 'grid' }));
    if (i % step === 0) g.append(s('text', { x: x(t) + 3, y: H - 8, class: 'tick' }, dayLabel(t)));
  });
  for (const v of [0, yMax / 2, yMax]) {
    g.append(s('text', { x: M.left - 6, y: y(v) + 4, class: 'tick', 'text-anchor': 'end' }, yFormat(v)));
  }
  if (label) g.append(s('text', { x: M.left, y: M.top - 8, class: 'label' }, label));
  return g;
}

/**
 * A line over time. `points`: `[[ms, value|null, status?], ...]` oldest first; `lines`:
 * `[{y, cls, label}]` thresholds; `bars`: `[[ms, n]]` drawn as ticks along the bottom
 * (failures); `yMax` fixes the top of the scale (100 for percentages). Points with a non-ok
 * status get a marker in that status's colour.
 */
export function lineChart({ points, from, to, lines = [], bars = [], yFormat = String, label = '', title = '', yMax = Infinity }) {
  const values = points.map((p) => p[1]).filter((v) => v !== null && Number.isFinite(v));
  const top = Number.isFinite(yMax) ? yMax : Math.max(1, ...values, ...lines.map((l) => l.y * 1.15));
  const x = scale(from, to, M.left, W - M.right);
  const y = scale(0, top, H - M.bottom, M.top);
  const svg = s('svg', {
    viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': title || label,
    'data-count': points.length,
    'data-first': points.length ? points[0][0] : '',
    'data-last': points.length ? points[points.length - 1][0] : '',
  });
  svg.append(s('title', {}, title || label), frame(x, y, from, to, top, yFormat, label));
  for (const l of lines) {
    svg.append(s('line', { x1: M.left, x2: W - M.right, y1: y(l.y), y2: y(l.y), class: `threshold ${l.cls}` }));
    svg.append(s('text', { x: M.left + 6, y: y(l.y) - 4, class: `tick ${l.cls}` }, l.label));
  }
  let d = '';
  let pen = false;
  for (const [t, v] of points) {
    if (v === null || !Number.isFinite(v)) {
      pen = false;
    } else {
      d += `${pen ? 'L' : 'M'}${x(t).toFixed(1)},${y(v).toFixed(1)}`;
      pen = true;
    }
  }
  svg.append(s('path', { d, class: 'series' }));
  for (const [t, v, st] of points) {
    if (st && st !== 'ok' && v !== null && Number.isFinite(v)) {
      svg.append(s('circle', { cx: x(t).toFixed(1), cy: y(v).toFixed(1), r: 2.5, class: `mark s-${known(st)}` }));
    }
  }
  for (const [t, n] of bars) {
    if (n > 0) {
      svg.append(s('rect', { x: x(t) - 1.5, y: H - M.bottom - 8, width: 3, height: 8, class: 'failure' },
        s('title', {}, `${n} failed`)));
    }
  }
  return svg;
}

/** Stacked bars per day: `days`: `[[ms, [a, b, ...]], ...]`, `classes` per stack layer. */
export function barChart({ days, classes, yFormat = String, label = '', title = '' }) {
  const from = days.length ? days[0][0] : 0;
  const to = days.length ? days[days.length - 1][0] + DAY : DAY;
  const top = Math.max(1, ...days.map(([, vs]) => vs.reduce((a, b) => a + b, 0)));
  const x = scale(from, to, M.left, W - M.right);
  const y = scale(0, top, H - M.bottom, M.top);
  const svg = s('svg', {
    viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': title || label,
    'data-count': days.length,
    'data-first': days.length ? from : '',
    'data-last': days.length ? days[days.length - 1][0] : '',
  });
  svg.append(s('title', {}, title || label), frame(x, y, from, to, top, yFormat, label));
  const w = Math.max(1, x(from + DAY) - x(from) - 2);
  for (const [t, vs] of days) {
    let base = 0;
    vs.forEach((v, i) => {
      if (v > 0) {
        svg.append(s('rect', { x: x(t) + 1, y: y(base + v), width: w, height: y(base) - y(base + v), class: `bar ${classes[i]}` },
          s('title', {}, `${dayLabel(t)}: ${yFormat(v)}`)));
      }
      base += v;
    });
  }
  return svg;
}

/** A small line without axes: `[[x, y], ...]`. */
export function sparkline(points, cls = '') {
  const sw = 120;
  const sh = 24;
  const svg = s('svg', { viewBox: `0 0 ${sw} ${sh}`, class: `spark ${cls}`, 'aria-hidden': 'true' });
  if (points.length < 2) return svg;
  const xs = points.map((p) => p[0]);
  const ys = points.map((p) => p[1]);
  const x = scale(Math.min(...xs), Math.max(...xs), 1, sw - 1);
  const lo = Math.min(...ys);
  const hi = Math.max(...ys);
  const y = scale(lo, hi === lo ? lo + 1 : hi, sh - 2, 2);
  const d = points.map(([a, b], i) => `${i ? 'L' : 'M'}${x(a).toFixed(1)},${y(b).toFixed(1)}`).join('');
  svg.append(s('path', { d, class: 'series' }));
  return svg;
}

/**
 * A cluster's recoverability on one time line ending now: the recoverable window (`start` to
 * `end`, Unix ms) as a bar, the WAL after a cut as a hatched critical bar, and the data at risk
 * (the last `riskSecs` before now) as a critical bar on a second row; the point the latest
 * restore drill recovered to (`drillAt`, Unix ms) as a diamond on the window row, coloured by
 * the drill's status. The `svg` carries `data-window-start`, `data-window-end`, `data-cut`,
 * `data-risk-secs` and `data-drill-recovered` for tests.
 */
export function timelineBar({
  from, to, start = null, end = null, cut = false, riskSecs = null, drillAt = null, drillStatus = 'ok', label = '',
}) {
  const BW = W;
  const BH = 74;
  const x = scale(from, to, M.left, BW - M.right);
  const svg = s('svg', {
    class: 'chart timeline', viewBox: `0 0 ${BW} ${BH}`, role: 'img', 'aria-label': label,
    'data-window-start': start ?? '', 'data-window-end': end ?? '', 'data-cut': cut ? 'true' : 'false',
    'data-risk-secs': riskSecs ?? '',
    'data-drill-recovered': drillAt ?? '',
  });
  svg.append(s('title', {}, label));
  const row = (y, text) => {
    svg.append(s('rect', { x: M.left, y, width: BW - M.left - M.right, height: 14, class: 'plot' }));
    svg.append(s('text', { x: M.left - 6, y: y + 11, class: 'tick', 'text-anchor': 'end' }, text));
  };
  row(8, 'window');
  row(30, 'at risk');
  if (start !== null && end !== null) {
    const x0 = x(Math.max(start, from));
    svg.append(s('rect', { x: x0, y: 8, width: Math.max(1, x(end) - x0), height: 14, class: 'bar s-ok' }));
    if (cut) {
      svg.append(s('rect', { x: x(end), y: 8, width: Math.max(1, x(to) - x(end)), height: 14, class: 'bar cut s-critical' }));
    }
  }
  if (riskSecs !== null && riskSecs > 0) {
    const x0 = x(Math.max(from, to - riskSecs * 1000));
    svg.append(s('rect', { x: x0, y: 30, width: Math.max(2, x(to) - x0), height: 14, class: 'bar s-critical' }));
  }
  if (drillAt !== null && drillAt >= from && drillAt <= to) {
    const dx = x(drillAt);
    svg.append(s('path', {
      d: `M${dx} 5 L${dx + 6} 15 L${dx} 25 L${dx - 6} 15 Z`, class: `drill-mark s-${drillStatus}`,
    }, s('title', {}, 'latest restore drill recovered to here')));
  }
  midnights(from, to).forEach((t, i, all) => {
    const step = Math.max(1, Math.ceil(all.length / 10));
    svg.append(s('line', { x1: x(t), x2: x(t), y1: 8, y2: 44, class: 'grid' }));
    if (i % step === 0) svg.append(s('text', { x: x(t) + 3, y: 62, class: 'tick' }, dayLabel(t)));
  });
  return svg;
}
