// Error log records of a service, filterable by status code and Envoy
// response flag.
import {h, replace, loading, empty, errorBox, field, table} from './dom.js';
import * as api from './api.js';
import * as router from './router.js';
import {dateTime, ms} from './format.js';

const PREFERRED = ['time', 'timestamp', 'start_time', 'service', 'source', 'destination', 'endpoint', 'method', 'path', 'code', 'response_code', 'status', 'grpc_status', 'flag', 'flags', 'response_flags', 'duration_ms', 'latency_ms', 'upstream_cluster', 'trace_id', 'traceID'];

function recordsOf(body) {
  if (Array.isArray(body)) return body;
  for (const k of ['records', 'data', 'errors', 'items']) if (Array.isArray(body[k])) return body[k];
  return [];
}

function cell(key, v) {
  if (v === null || v === undefined || v === '') return '—';
  if (/^(time|timestamp|start_time)$/.test(key) && (typeof v === 'string' || typeof v === 'number')) {
    const d = typeof v === 'number' ? new Date(v > 1e14 ? v / 1000 : v > 1e11 ? v : v * 1000) : new Date(v);
    if (!Number.isNaN(d.getTime())) return dateTime(d);
  }
  if (/_ms$/.test(key) && typeof v === 'number') return ms(v);
  if (/^trace_?id$/i.test(key) && typeof v === 'string' && v) return h('a', {href: router.href('trace', {id: v}), text: v.slice(0, 16)});
  return typeof v === 'object' ? JSON.stringify(v) : String(v);
}

export async function view(root, params, signal) {
  const svc = h('input', {type: 'text', name: 'service', value: params.service || '', placeholder: 'reviews'});
  const code = h('input', {type: 'text', name: 'code', value: params.code || '', placeholder: '503', size: 6});
  const flag = h('input', {type: 'text', name: 'flag', value: params.flag || '', placeholder: 'UH, UF, UT, NR', size: 8});
  const form = h('form', {class: 'toolbar', role: 'search', 'aria-label': 'Filter error records'},
    field('Service', svc), field('Status code', code), field('Response flag', flag), h('button', {type: 'submit', class: 'btn primary'}, 'Show errors'));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const target = router.href('errors', {service: svc.value.trim(), code: code.value.trim(), flag: flag.value.trim()});
    if (target === window.location.hash) window.dispatchEvent(new HashChangeEvent('hashchange')); else window.location.hash = target.slice(1);
  });
  const out = h('section', {class: 'error-log', 'aria-label': 'Error records'});
  replace(root, h('h1', {text: 'Error log'}), form, out);
  if (!params.service) { out.append(empty('Enter a service to see its error records.')); return; }
  out.append(loading('error records'));
  try {
    const body = await api.errorRecords({service: params.service, code: params.code, flag: params.flag}, signal);
    const recs = recordsOf(body);
    if (!recs.length) { replace(out, empty(`No error records for ${params.service}${params.code ? ` with code ${params.code}` : ''}${params.flag ? ` with flag ${params.flag}` : ''}.`)); return; }
    const keys = new Set();
    for (const r of recs.slice(0, 100)) for (const k of Object.keys(r)) keys.add(k);
    const cols = [...PREFERRED.filter((k) => keys.has(k)), ...[...keys].filter((k) => !PREFERRED.includes(k)).sort()];
    replace(out, h('p', {class: 'summary', role: 'status', text: `${recs.length} record${recs.length === 1 ? '' : 's'}`}),
      table(cols.map((k) => ({label: k, render: (r) => cell(k, r[k])})), recs, {class: 'errors-table'}));
  } catch (e) {
    if (e.name !== 'AbortError') replace(out, errorBox(e, 'error records'));
  }
}
