// Interactive SVG line chart: hover (mouse or arrow keys) shows the values
// at a time, drag selects a range to zoom into. Series differ by dash
// pattern and marker as well as colour.
import {h, s, showTip, hideTip} from './dom.js';
import {time as fmtTime} from './format.js';

const M = {l: 56, r: 12, t: 10, b: 26};
const DASHES = ['', '6 3', '2 3', '10 3 2 3', '1 2'];

function niceTicks(min, max, n = 5) {
  if (max === min) { max = min + 1; }
  const span = max - min;
  const step0 = Math.pow(10, Math.floor(Math.log10(span / n)));
  const err = (span / n) / step0;
  const step = step0 * (err >= 7.5 ? 10 : err >= 3.5 ? 5 : err >= 1.5 ? 2 : 1);
  const out = [];
  for (let v = Math.ceil(min / step) * step; v <= max + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

// series: [{name, points: [[unixSec, value], ...]}]
// opts: {title, unit, fmt(v), yMin, yMax, onZoom(startSec, endSec)}
export function lineChart(series, opts) {
  // Compact charts (side panel) use a smaller drawing so text keeps its size.
  const W = opts.compact ? 420 : 640, H = opts.compact ? 190 : 220;
  const fmt = opts.fmt || ((v) => String(v));
  const all = series.flatMap((x) => x.points).filter((p) => Number.isFinite(p[1]));
  const npoints = all.length;
  const fig = h('figure', {class: 'chart', dataset: {points: String(npoints)}});
  const titleId = `c${Math.random().toString(36).slice(2)}`;
  fig.append(h('figcaption', {id: titleId}, h('span', {text: opts.title}), opts.unit ? h('span', {class: 'unit', text: ` (${opts.unit})`}) : null));
  if (!npoints) {
    fig.append(h('p', {class: 'state empty', role: 'status', text: 'No data in this time range.'}));
    return fig;
  }
  let x0 = Infinity, x1 = -Infinity, y0 = opts.yMin ?? Infinity, y1 = opts.yMax ?? -Infinity;
  for (const [t, v] of all) {
    x0 = Math.min(x0, t); x1 = Math.max(x1, t);
    if (opts.yMin === undefined) y0 = Math.min(y0, v);
    if (opts.yMax === undefined) y1 = Math.max(y1, v);
  }
  if (opts.yMin === undefined) y0 = Math.min(0, y0);
  if (y1 <= y0) y1 = y0 + 1;
  if (x1 === x0) { x0 -= 30; x1 += 30; }
  const yt = niceTicks(y0, y1);
  y1 = Math.max(y1, yt[yt.length - 1]);
  const X = (t) => M.l + (t - x0) / (x1 - x0) * (W - M.l - M.r);
  const Y = (v) => H - M.b - (v - y0) / (y1 - y0) * (H - M.t - M.b);
  const T = (px) => x0 + (px - M.l) / (W - M.l - M.r) * (x1 - x0);

  const svg = s('svg', {viewBox: `0 0 ${W} ${H}`, class: 'chart-svg', role: 'img', tabindex: '0', 'aria-labelledby': titleId,
    'aria-description': 'Use left and right arrow keys to read values; drag with the mouse to zoom into a range.'});
  const grid = s('g', {class: 'grid'});
  for (const v of yt) {
    grid.append(s('line', {x1: M.l, x2: W - M.r, y1: Y(v), y2: Y(v)}),
      s('text', {x: M.l - 6, y: Y(v) + 4, 'text-anchor': 'end', class: 'tick', text: fmt(v)}));
  }
  const tstep = [10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400].find((st) => (x1 - x0) / st <= 6) || 86400;
  const xt = [];
  for (let t = Math.ceil(x0 / tstep) * tstep; t <= x1; t += tstep) xt.push(t);
  for (const t of xt) {
    grid.append(s('text', {x: X(t), y: H - 8, 'text-anchor': X(t) > W - 30 ? 'end' : 'middle', class: 'tick', text: x1 - x0 < 600 ? fmtTime(t * 1000) : fmtTime(t * 1000).slice(0, 5)}));
  }
  grid.append(s('line', {class: 'axis', x1: M.l, x2: W - M.r, y1: H - M.b, y2: H - M.b}));
  svg.append(grid);

  series.forEach((sr, i) => {
    const pts = sr.points.filter((p) => Number.isFinite(p[1]));
    if (!pts.length) return;
    let d = '';
    let prevT = null;
    const gap = (x1 - x0) / Math.max(pts.length, 1) * 3;
    for (const [t, v] of pts) {
      d += `${prevT === null || t - prevT > gap * 4 ? 'M' : 'L'}${X(t).toFixed(1)},${Y(v).toFixed(1)}`;
      prevT = t;
    }
    const g = s('g', {class: `series s${i % 6}`});
    g.append(s('path', {d, fill: 'none', 'stroke-dasharray': DASHES[i % DASHES.length] || null, class: 'line'}));
    if (pts.length <= 240) {
      for (const [t, v] of pts) g.append(s('circle', {class: 'pt', cx: X(t).toFixed(1), cy: Y(v).toFixed(1), r: 1.8}));
    }
    svg.append(g);
  });

  const rule = s('line', {class: 'rule', y1: M.t, y2: H - M.b, visibility: 'hidden'});
  const brush = s('rect', {class: 'brush', y: M.t, height: H - M.t - M.b, visibility: 'hidden'});
  svg.append(rule, brush);

  const times = [...new Set(all.map((p) => p[0]))].sort((a, b) => a - b);
  let cursor = -1;
  const toSvgX = (ev) => {
    const r = svg.getBoundingClientRect();
    return (ev.clientX - r.left) / r.width * W;
  };
  const nearest = (t) => {
    let lo = 0, hi = times.length - 1;
    while (hi - lo > 1) { const mid = (lo + hi) >> 1; if (times[mid] < t) lo = mid; else hi = mid; }
    return Math.abs(times[lo] - t) <= Math.abs(times[hi] - t) ? lo : hi;
  };
  const showAt = (idx, cx, cy) => {
    cursor = idx;
    const t = times[idx];
    rule.setAttribute('x1', X(t)); rule.setAttribute('x2', X(t)); rule.setAttribute('visibility', 'visible');
    const lines = [fmtTime(t * 1000)];
    for (const sr of series) {
      const p = sr.points.find((pp) => pp[0] === t);
      lines.push(`${sr.name}: ${p && Number.isFinite(p[1]) ? fmt(p[1]) : '—'}${opts.unit && !fmt(1).includes(opts.unit) ? ' ' + opts.unit : ''}`);
    }
    live.textContent = lines.join(', ');
    showTip(cx, cy, lines);
  };
  let dragFrom = null;
  svg.addEventListener('pointermove', (ev) => {
    const px = toSvgX(ev);
    if (dragFrom !== null) {
      const a = Math.max(M.l, Math.min(dragFrom, px)), b = Math.min(W - M.r, Math.max(dragFrom, px));
      brush.setAttribute('x', a); brush.setAttribute('width', Math.max(0, b - a)); brush.setAttribute('visibility', 'visible');
    }
    if (px < M.l || px > W - M.r) return;
    showAt(nearest(T(px)), ev.clientX, ev.clientY);
  });
  svg.addEventListener('pointerleave', () => { rule.setAttribute('visibility', 'hidden'); hideTip(); });
  svg.addEventListener('pointerdown', (ev) => {
    if (!opts.onZoom || ev.button !== 0) return;
    dragFrom = toSvgX(ev);
    svg.setPointerCapture(ev.pointerId);
  });
  svg.addEventListener('pointerup', (ev) => {
    if (dragFrom === null) return;
    const a = T(Math.min(dragFrom, toSvgX(ev))), b = T(Math.max(dragFrom, toSvgX(ev)));
    dragFrom = null;
    brush.setAttribute('visibility', 'hidden');
    // A click (or a tiny drag) is not a zoom.
    if (b - a > (x1 - x0) / 100 && b - a >= 2) opts.onZoom(Math.floor(a), Math.ceil(b));
  });
  svg.addEventListener('keydown', (ev) => {
    if (ev.key !== 'ArrowLeft' && ev.key !== 'ArrowRight' && ev.key !== 'Home' && ev.key !== 'End') return;
    ev.preventDefault();
    if (ev.key === 'Home') cursor = 0;
    else if (ev.key === 'End') cursor = times.length - 1;
    else cursor = Math.max(0, Math.min(times.length - 1, cursor + (ev.key === 'ArrowLeft' ? -1 : 1)));
    const r = svg.getBoundingClientRect();
    showAt(cursor, r.left + X(times[cursor]) / W * r.width, r.top + r.height / 3);
  });
  svg.addEventListener('blur', () => { rule.setAttribute('visibility', 'hidden'); hideTip(); });

  const live = h('p', {class: 'sr-only', 'aria-live': 'polite'});
  const legend = h('ul', {class: 'legend'});
  series.forEach((sr, i) => {
    const sw = s('svg', {width: 28, height: 10, 'aria-hidden': 'true', class: `series s${i % 6}`},
      s('line', {x1: 1, x2: 27, y1: 5, y2: 5, class: 'line', 'stroke-dasharray': DASHES[i % DASHES.length] || null}));
    const last = [...sr.points].reverse().find((p) => Number.isFinite(p[1]));
    legend.append(h('li', null, sw, h('span', {text: sr.name}), h('span', {class: 'last', text: last ? ` ${fmt(last[1])}` : ' —'})));
  });
  fig.append(svg, legend, live);
  return fig;
}

// matrixToSeries turns a Prometheus matrix into chart series, naming each
// by nameOf(metric).
export function matrixToSeries(result, nameOf, scale = 1) {
  return result.map((r) => ({
    name: nameOf(r.metric),
    points: r.values.map(([t, v]) => [Number(t), Number(v) * scale]),
  }));
}
