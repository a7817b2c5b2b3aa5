// Time range state shared by the views: ?range=15m&end=<unix seconds>.
import {h, field, select} from './dom.js';
import {parseDuration, shortDuration, dateTime} from './format.js';
import * as router from './router.js';

export const RANGES = ['5m', '15m', '30m', '1h', '3h', '6h', '12h', '24h', '2d', '7d'];

export function resolve(params) {
  let rangeSec = parseDuration(params.range || '') || 900;
  let end = params.end ? Number(params.end) : Date.now() / 1000;
  if (!Number.isFinite(end)) end = Date.now() / 1000;
  if (params.start) {
    const st = Number(params.start);
    if (Number.isFinite(st) && st < end) rangeSec = end - st;
  }
  return {start: end - rangeSec, end, rangeSec, live: !params.end};
}

// step picks about `points` points over the range, never below 10 s (the
// flush interval).
export function step(r, points = 120) {
  return Math.max(10, Math.ceil(r.rangeSec / points / 10) * 10);
}

// window is the rate() window for a step: long enough to always hold two
// samples of a counter flushed every 10 s.
export function win(stepSec) {
  return `${Math.max(60, stepSec * 2)}s`;
}

// controls renders the range selector, an "end" indicator with a Live
// button, and a refresh button. onChange gets the new params.
export function controls(params, onChange) {
  const r = resolve(params);
  const cur = params.start ? shortDuration(Math.round(r.rangeSec)) : (params.range || '15m');
  const opts = RANGES.includes(cur) ? RANGES : [cur, ...RANGES];
  const rs = select('range', opts.map((x) => [x, `Last ${x}`]), cur, {});
  rs.addEventListener('change', () => onChange({range: rs.value, start: undefined}));
  const wrap = h('div', {class: 'timerange'}, field('Time range', rs));
  if (!r.live) {
    wrap.append(h('span', {class: 'until', text: `until ${dateTime(r.end * 1000)}`}),
      h('button', {type: 'button', class: 'btn', onclick: () => onChange({end: undefined, start: undefined})}, 'Back to live'));
  }
  wrap.append(h('button', {type: 'button', class: 'btn', title: 'Reload the data', onclick: () => onChange({})}, 'Refresh'));
  return wrap;
}

// apply writes a controls change to the URL and re-renders via hashchange.
export function apply(change) {
  const {page, params} = router.current();
  const next = {...params, ...change};
  for (const [k, v] of Object.entries(change)) if (v === undefined) delete next[k];
  const target = router.href(page, next);
  if (target === window.location.hash) window.dispatchEvent(new HashChangeEvent('hashchange'));
  else window.location.hash = target.slice(1);
}
