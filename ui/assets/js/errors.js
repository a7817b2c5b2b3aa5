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

// identity formats a call side: service.namespace (instance).
function identity(v) {
  if (!v || typeof v !== 'object') return v;
  const name = v.service ? `${v.service}${v.namespace ? '.' + v.namespace : ''}` : (v.ip || '?');
  const inst = v.instance || v.workload;
  return inst ? `${name} (${inst})` : name;
}

// The errorlog record shape; other fields still get a column each.
const RECORD_COLUMNS = [
  {label: 'Time', render: (r) => cell('time', r.time)},
  {label: 'Source', render: (r) => identity(r.source) || '—'},
  {label: 'Destination', render: (r) => identity(r.destination) || '—'},
  {label: 'Request', render: (r) => [r.method, r.path || r.endpoint].filter(Boolean).join(' ') || r.endpoint || '—'},
  {label: 'Status', render: (r) => `${r.status || '—'}${r.grpc_status !== undefined && r.grpc_status !== null ? ` (gRPC ${r.grpc_status})` : ''}`},
  {label: 'Flags', render: (r) => (r.response_flags || []).join(',') || '—'},
  {label: 'Duration', num: true, render: (r) => ms(r.duration_ms)},
  {label: 'Seen by', render: (r) => [r.detect_point, r.protocol, r.tls].filter(Boolean).join(' · ') || '—'},
  {label: 'Request ID', render: (r) => r.request_id || '—'},
];
const KNOWN = new Set(['time', 'source', 'destination', 'method', 'path', 'endpoint', 'status', 'grpc_status', 'response_flags', 'duration_ms', 'detect_point', 'protocol', 'tls', 'request_id']);

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

// summary counts the failed requests of the last hour by status code and
// response flag, from istio_requests_total (what Grafana would show).
async function summary(box, params, signal) {
  const m = {reporter: 'destination', destination_canonical_service: params.service};
  const extra = [`response_code=~${api.q(params.code ? params.code.replace(/[^0-9x]/gi, '').replace(/x/gi, '.') : '5..|4..|0')}`];
  if (params.flag) extra.push(`response_flags=~${api.q(`.*${params.flag.replace(/[^A-Z,]/g, '')}.*`)}`);
  const sel = api.sel(m).slice(0, -1) + ',' + extra.join(',') + '}';
  const query = `sum by (response_code, response_flags, source_canonical_service) (increase(istio_requests_total${sel}[1h]))`;
  replace(box, h('h2', {text: 'Failed requests in the last hour, by code and flag'}), loading('the error breakdown'));
  try {
    const res = (await api.promQuery(query, undefined, signal)).filter((r) => Number(r.value[1]) >= 0.5)
      .sort((a, b) => Number(b.value[1]) - Number(a.value[1]));
    if (!res.length) { replace(box, box.firstChild, empty('No failed requests in the last hour.')); return; }
    replace(box, box.firstChild, table([
      {label: 'Code', render: (r) => r.metric.response_code},
      {label: 'Response flag', render: (r) => r.metric.response_flags},
      {label: 'Caller', render: (r) => r.metric.source_canonical_service || '—'},
      {label: 'Requests', num: true, render: (r) => Math.round(Number(r.value[1])).toString()},
    ], res), h('p', {class: 'hint'}, 'Query: ', h('code', {text: query})));
  } catch (e) {
    if (e.name !== 'AbortError') replace(box, box.firstChild, errorBox(e, 'the error breakdown'));
  }
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
  const breakdown = h('section', {class: 'error-breakdown', 'aria-label': 'Errors by code and flag'});
  replace(root, h('h1', {text: 'Error log'}), form, breakdown, out);
  if (!params.service) { out.append(empty('Enter a service to see its error records.')); return; }
  summary(breakdown, params, signal);
  out.append(loading('error records'));
  try {
    const body = await api.errorRecords({service: params.service, code: params.code, flag: params.flag}, signal);
    const recs = recordsOf(body);
    if (!recs.length) { replace(out, empty(`No error records for ${params.service}${params.code ? ` with code ${params.code}` : ''}${params.flag ? ` with flag ${params.flag}` : ''}.`)); return; }
    const keys = new Set();
    for (const r of recs.slice(0, 100)) for (const k of Object.keys(r)) keys.add(k);
    let columns;
    if (keys.has('destination') && keys.has('status')) {
      columns = [...RECORD_COLUMNS, ...[...keys].filter((k) => !KNOWN.has(k)).sort().map((k) => ({label: k, render: (r) => cell(k, r[k])}))];
    } else {
      const cols = [...PREFERRED.filter((k) => keys.has(k)), ...[...keys].filter((k) => !PREFERRED.includes(k)).sort()];
      columns = cols.map((k) => ({label: k, render: (r) => cell(k, r[k])}));
    }
    replace(out, h('h2', {text: 'Records'}), h('p', {class: 'summary', role: 'status', dataset: {records: String(recs.length)}, text: `${recs.length} record${recs.length === 1 ? '' : 's'}, newest first`}),
      table(columns, recs, {class: 'errors-table'}));
  } catch (e) {
    if (e.name !== 'AbortError') replace(out, errorBox(e, 'error records'));
  }
}
