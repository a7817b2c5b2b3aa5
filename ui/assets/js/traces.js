// Trace search: by service, operation, tags, duration and time range, with
// a duration scatter plot and a result list.
import {h, s, replace, clear, loading, empty, errorBox, field, select, showTip, hideTip} from './dom.js';
import * as api from './api.js';
import * as router from './router.js';
import * as tr from './timerange.js';
import {num, us, ms, dateTime, parseDuration, time as timeOf} from './format.js';
import {isErrorSpan, serviceOf} from './waterfall.js';

// parseTags reads `key=value key2="a b"` (logfmt, like Jaeger's search
// form) into an object.
export function parseTags(str) {
  const out = {};
  const re = /\s*([^=\s]+)=(?:"((?:[^"\\]|\\.)*)"|(\S*))/gy;
  let m, last = 0;
  str = str.trim();
  while ((m = re.exec(str)) !== null) {
    out[m[1]] = m[2] !== undefined ? m[2].replace(/\\(.)/g, '$1') : m[3];
    last = re.lastIndex;
    if (last >= str.length) break;
  }
  if (str.slice(last).trim()) throw new Error(`cannot read tags near "${str.slice(last).trim().slice(0, 30)}": use key=value pairs separated by spaces`);
  return out;
}

// summarize gives the list and scatter figures of one trace.
export function summarize(t) {
  const spans = t.spans || [];
  let start = Infinity, end = -Infinity, errors = 0;
  const ids = new Set(spans.map((sp) => sp.spanID));
  let root = null;
  const svcCount = new Map();
  for (const sp of spans) {
    start = Math.min(start, sp.startTime); end = Math.max(end, sp.startTime + sp.duration);
    if (isErrorSpan(sp)) errors++;
    const svc = serviceOf(t, sp);
    svcCount.set(svc, (svcCount.get(svc) || 0) + 1);
    const parent = (sp.references || []).find((r) => r.refType === 'CHILD_OF' && ids.has(r.spanID) && r.spanID !== sp.spanID);
    if (!parent && (!root || sp.startTime < root.startTime)) root = sp;
  }
  if (!root) root = spans[0];
  return {id: t.traceID, start, duration: end - start, spans: spans.length, errors, root,
    name: root ? `${serviceOf(t, root)}: ${root.operationName}` : '(no spans)', services: svcCount};
}

function scatter(rows, onPick) {
  const W = 1200, H = 210, M = {l: 64, r: 16, t: 10, b: 26};
  const fig = h('figure', {class: 'chart scatter', dataset: {points: String(rows.length)}});
  fig.append(h('figcaption', {text: 'Trace durations over time (ms); squares with × are traces with errors'}));
  if (!rows.length) return fig;
  let x0 = Math.min(...rows.map((r) => r.start)), x1 = Math.max(...rows.map((r) => r.start));
  if (x1 === x0) { x0 -= 30e6; x1 += 30e6; }
  const y1 = Math.max(...rows.map((r) => r.duration)) * 1.1 || 1;
  const X = (t) => M.l + (t - x0) / (x1 - x0) * (W - M.l - M.r);
  const Y = (d) => H - M.b - d / y1 * (H - M.t - M.b);
  const svg = s('svg', {viewBox: `0 0 ${W} ${H}`, class: 'chart-svg', role: 'group', 'aria-label': 'Duration scatter plot; each point links to its trace'});
  const g = s('g', {class: 'grid'});
  for (let i = 0; i <= 4; i++) {
    const d = y1 * i / 4;
    g.append(s('line', {x1: M.l, x2: W - M.r, y1: Y(d), y2: Y(d)}), s('text', {x: M.l - 6, y: Y(d) + 4, 'text-anchor': 'end', class: 'tick', text: us(d)}));
  }
  for (let i = 0; i <= 4; i++) {
    const t = x0 + (x1 - x0) * i / 4;
    const d = new Date(t / 1000);
    // Results close together in time need sub-second ticks to tell apart.
    const label = x1 - x0 < 60e6 ? `${timeOf(d)}.${String(d.getMilliseconds()).padStart(3, '0')}` : timeOf(d);
    g.append(s('text', {x: X(t), y: H - 8, 'text-anchor': i === 0 ? 'start' : i === 4 ? 'end' : 'middle', class: 'tick', text: label}));
  }
  svg.append(g);
  for (const r of rows) {
    const cx = X(r.start), cy = Y(r.duration);
    const mark = r.errors
      ? s('g', {class: 'pt err'}, s('rect', {x: cx - 5, y: cy - 5, width: 10, height: 10}), s('path', {d: `M${cx - 3},${cy - 3}L${cx + 3},${cy + 3}M${cx + 3},${cy - 3}L${cx - 3},${cy + 3}`}))
      : s('circle', {class: 'pt', cx, cy, r: 5});
    const a = s('a', {href: router.href('trace', {id: r.id}), 'aria-label': `${r.name}, ${us(r.duration)}, ${r.spans} spans${r.errors ? `, ${r.errors} errors` : ''}`}, mark);
    a.addEventListener('pointerenter', (ev) => showTip(ev.clientX, ev.clientY, [r.name, `${us(r.duration)} · ${r.spans} spans${r.errors ? ` · ${r.errors} errors` : ''}`, dateTime(r.start / 1000)]));
    a.addEventListener('pointerleave', hideTip);
    svg.append(a);
  }
  fig.append(svg);
  return fig;
}

export async function view(root, params, signal) {
  const range = tr.resolve({range: params.range || '1h', end: params.end, start: params.start});
  const svc = select('service', [['', 'Choose a service…']], params.service || '', {required: true});
  const op = select('operation', [['', 'All operations']], params.operation || '');
  const tags = h('input', {type: 'text', name: 'tags', value: params.tags || '', placeholder: 'http.status_code=500 error=true', autocomplete: 'off'});
  const minD = h('input', {type: 'text', name: 'minDuration', value: params.minDuration || '', placeholder: 'e.g. 100ms', size: 8});
  const maxD = h('input', {type: 'text', name: 'maxDuration', value: params.maxDuration || '', placeholder: 'e.g. 2s', size: 8});
  const rangeSel = select('range', tr.RANGES.map((x) => [x, `Last ${x}`]), params.range || '1h');
  const limit = h('input', {type: 'number', name: 'limit', min: 1, max: 1500, value: params.limit || 20});
  const formErr = h('p', {class: 'form-error', role: 'alert'});
  const form = h('form', {class: 'toolbar search', role: 'search', 'aria-label': 'Find traces'},
    field('Service', svc), field('Operation', op), field('Tags', tags, 'key=value pairs, space-separated'),
    field('Min duration', minD), field('Max duration', maxD), field('Time range', rangeSel), field('Limit', limit),
    h('button', {type: 'submit', class: 'btn primary'}, 'Find traces'), formErr);
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    formErr.textContent = '';
    try {
      if (tags.value.trim()) parseTags(tags.value);
      for (const [el, name] of [[minD, 'Min duration'], [maxD, 'Max duration']]) {
        if (el.value.trim() && parseDuration(el.value.trim()) === null) throw new Error(`${name}: "${el.value}" is not a duration like 250ms or 1.5s`);
      }
      if (!svc.value) throw new Error('Choose a service.');
    } catch (e) { formErr.textContent = e.message; return; }
    const next = {service: svc.value, operation: op.value, tags: tags.value.trim(), minDuration: minD.value.trim(), maxDuration: maxD.value.trim(), range: rangeSel.value, limit: limit.value, end: params.end};
    const target = router.href('traces', next);
    if (target === window.location.hash) window.dispatchEvent(new HashChangeEvent('hashchange'));
    else window.location.hash = target.slice(1);
  });
  const results = h('section', {class: 'results', 'aria-label': 'Search results'});
  replace(root, h('h1', {text: 'Traces'}), form, results);

  const loadOps = async (service) => {
    clear(op).append(h('option', {value: '', text: 'All operations'}));
    if (!service) return;
    try {
      const body = await api.jaeger(`/api/services/${encodeURIComponent(service)}/operations`, null, signal);
      for (const o of (body.data || []).map((x) => (typeof x === 'string' ? x : x.name)).sort()) {
        const opt = h('option', {value: o, text: o});
        if (o === params.operation) opt.selected = true;
        op.append(opt);
      }
    } catch (e) { if (e.name !== 'AbortError') formErr.textContent = `Operations: ${e.message}`; }
  };
  svc.addEventListener('change', () => loadOps(svc.value));
  try {
    const body = await api.jaeger('/api/services', null, signal);
    const names = (body.data || []).slice().sort();
    // Links from the graph and dashboards carry the short service name;
    // trace service names may add the namespace (reviews.default).
    if (params.service && !names.includes(params.service)) {
      const full = names.filter((n) => n.startsWith(params.service + '.'));
      if (full.length === 1) {
        params = {...params, service: full[0]};
        router.update({service: full[0]});
      } else {
        results.append(h('p', {class: 'state warn', role: 'status', text: `No traces of service "${params.service}" are stored.`}));
      }
    }
    for (const name of names) svc.append(h('option', {value: name, text: name, selected: name === params.service}));
  } catch (e) {
    if (e.name === 'AbortError') return;
    replace(results, errorBox(e, 'the list of services'));
    return;
  }
  if (params.service) loadOps(params.service);
  if (!params.service) {
    results.append(empty('Choose a service and press “Find traces”.'));
    return;
  }
  results.append(loading('traces'));
  let tagJSON;
  try { tagJSON = params.tags ? JSON.stringify(parseTags(params.tags)) : undefined; } catch (e) { replace(results, errorBox(e, 'traces')); return; }
  try {
    const body = await api.jaeger('/api/traces', {
      service: params.service, operation: params.operation, tags: tagJSON, minDuration: params.minDuration, maxDuration: params.maxDuration,
      start: Math.floor(range.start * 1e6), end: Math.ceil(range.end * 1e6), limit: params.limit || 20,
    }, signal);
    const rows = (body.data || []).map(summarize).sort((a, b) => b.start - a.start);
    clear(results);
    if (Array.isArray(body.errors) && body.errors.length) results.append(errorBox(new Error(body.errors.map((e) => e.msg).join('; ')), 'some traces'));
    if (!rows.length) { results.append(empty('No traces match. Widen the time range or remove filters.')); return; }
    results.append(h('p', {class: 'summary', role: 'status', dataset: {traces: String(rows.length)}, text: `${rows.length} trace${rows.length === 1 ? '' : 's'}`}), scatter(rows));
    const list = h('ol', {class: 'trace-list'});
    for (const r of rows) {
      const maxDur = Math.max(...rows.map((x) => x.duration)) || 1;
      const bar = h('span', {class: 'durbar', 'aria-hidden': 'true'});
      bar.style.width = `${Math.max(1, r.duration / maxDur * 100)}%`;
      list.append(h('li', {class: r.errors ? 'err' : null},
        h('a', {href: router.href('trace', {id: r.id})}, h('span', {class: 'tname', text: r.name}), h('span', {class: 'tid', text: ` ${r.id.slice(0, 8)}`})),
        h('span', {class: 'meta', text: `${r.spans} spans${r.errors ? ` · ⚠ ${r.errors} error${r.errors > 1 ? 's' : ''}` : ''} · ${[...r.services.keys()].map((k) => k).join(', ')}`}),
        h('span', {class: 'dur', text: us(r.duration)}), h('time', {text: dateTime(r.start / 1000)}), h('span', {class: 'durtrack'}, bar)));
    }
    results.append(list);
  } catch (e) {
    if (e.name !== 'AbortError') replace(results, errorBox(e, 'traces'));
  }
}
