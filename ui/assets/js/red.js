// RED charts (rate, errors, latency percentiles, Apdex) of one scope over
// the meshlens_<scope>_* families (docs/metrics.md), server side.
import {h, replace, loading, errorBox} from './dom.js';
import {promRange, sel} from './api.js';
import {lineChart, matrixToSeries} from './chart.js';
import {num, pct, ms} from './format.js';
import * as tr from './timerange.js';

export const PERCENTILES = [50, 90, 95, 99];

// queries returns the PromQL of each chart. prefix is e.g.
// "meshlens_service_" or "meshlens_service_relation_".
export function queries(prefix, labels, stepSec) {
  const w = tr.win(stepSec);
  const m = sel({...labels, detect_point: 'server'});
  const r = (name) => `sum(rate(${prefix}${name}${m}[${w}]))`;
  return {
    rate: r('calls_total'),
    errors: `${r('errors_total')} / ${r('calls_total')}`,
    percentiles: PERCENTILES.map((p) => `histogram_quantile(${p / 100}, sum by (le) (rate(${prefix}latency_milliseconds_bucket${m}[${w}])))`),
    apdex: `(${r('apdex_satisfied_total')} + ${r('apdex_tolerating_total')} / 2) / ${r('calls_total')}`,
  };
}

function chartBox(title) {
  const box = h('div', {class: 'chart-box'});
  box.append(loading(title));
  return box;
}

// render fills container with the four RED charts; each loads on its own
// and shows its own error.
export function render(container, prefix, labels, params, signal, {compact = false} = {}) {
  const range = tr.resolve(params);
  const step = tr.step(range);
  const qs = queries(prefix, labels, step);
  const onZoom = (a, b) => tr.apply({start: String(a), end: String(b), range: undefined});
  const grid = h('div', {class: 'charts'});
  replace(container, grid);
  const defs = [
    {title: 'Request rate', unit: 'req/s', fmt: (v) => num(v), q: [qs.rate], names: ['rate']},
    {title: 'Error rate', unit: '% of requests', fmt: (v) => pct(v), q: [qs.errors], names: ['errors'], yMin: 0},
    {title: 'Latency percentiles', unit: 'ms', fmt: (v) => ms(v), q: qs.percentiles, names: PERCENTILES.map((p) => `p${p}`)},
    {title: 'Apdex', unit: '0–1', fmt: (v) => v.toFixed(2), q: [qs.apdex], names: ['Apdex'], yMin: 0, yMax: 1},
  ];
  for (const d of defs) {
    const box = chartBox(d.title);
    grid.append(box);
    Promise.all(d.q.map((q) => promRange(q, range.start, range.end, step, signal)))
      .then((results) => {
        const series = results.flatMap((res, i) => matrixToSeries(res, () => d.names[i]));
        replace(box, lineChart(series, {title: d.title, unit: d.unit, fmt: d.fmt, yMin: d.yMin, yMax: d.yMax, onZoom, compact}));
        box.dataset.query = d.q.join('\n');
      })
      .catch((e) => { if (e.name !== 'AbortError') replace(box, h('h3', {text: d.title}), errorBox(e, d.title)); });
  }
  return grid;
}
