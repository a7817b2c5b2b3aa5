// Service / instance / endpoint dashboards: RED charts over time, and the
// inbound and outbound relations with their current figures.
import {h, replace, loading, empty, errorBox, field, select, table} from './dom.js';
import * as api from './api.js';
import * as red from './red.js';
import * as router from './router.js';
import * as tr from './timerange.js';
import {num, pct, ms} from './format.js';

function link(page, params, text) { return h('a', {href: router.href(page, params), text}); }

// instant runs a query over the whole range, keyed by label.
async function byLabel(query, label, range, signal) {
  const res = await api.promQuery(query, range.end, signal);
  return new Map(res.map((r) => [r.metric[label] ?? '', Number(r.value[1])]));
}

async function relations(container, dir, labels, params, range, signal) {
  const w = `${Math.max(60, Math.round(range.rangeSec))}s`;
  const peer = dir === 'inbound' ? 'source_service' : 'destination_service';
  const self = dir === 'inbound' ? {destination_service: labels.service, destination_namespace: labels.namespace} : {source_service: labels.service, source_namespace: labels.namespace};
  const m = api.sel({...self, detect_point: 'server'});
  const P = 'meshlens_service_relation_';
  replace(container, h('h2', {text: dir === 'inbound' ? 'Inbound (callers)' : 'Outbound (callees)'}), loading(`${dir} relations`));
  try {
    const [calls, errs, p95] = await Promise.all([
      byLabel(`sum by (${peer}) (rate(${P}calls_total${m}[${w}]))`, peer, range, signal),
      byLabel(`sum by (${peer}) (rate(${P}errors_total${m}[${w}]))`, peer, range, signal),
      byLabel(`histogram_quantile(0.95, sum by (le, ${peer}) (rate(${P}latency_milliseconds_bucket${m}[${w}])))`, peer, range, signal),
    ]);
    const rows = [...calls.entries()].sort((a, b) => b[1] - a[1]).map(([svc, rate]) => ({svc, rate, err: rate ? (errs.get(svc) || 0) / rate : 0, p95: p95.get(svc)}));
    if (!rows.length) { replace(container, container.firstChild, empty(`No ${dir} calls in this time range.`)); return; }
    replace(container, container.firstChild, table([
      {label: 'Service', render: (r) => link('dashboard', {service: r.svc, range: params.range, end: params.end}, r.svc)},
      {label: 'Rate (req/s)', num: true, render: (r) => num(r.rate)},
      {label: 'Errors', num: true, render: (r) => pct(r.err)},
      {label: 'p95', num: true, render: (r) => ms(r.p95)},
    ], rows, {class: 'relations'}));
  } catch (e) {
    if (e.name !== 'AbortError') replace(container, container.firstChild, errorBox(e, `${dir} relations`));
  }
}

async function children(container, kind, labels, params, range, signal) {
  const w = `${Math.max(60, Math.round(range.rangeSec))}s`;
  const P = `meshlens_${kind}_`;
  const m = api.sel({service: labels.service, namespace: labels.namespace, detect_point: 'server'});
  replace(container, h('h2', {text: kind === 'instance' ? 'Instances' : 'Endpoints'}), loading(`${kind}s`));
  try {
    const [calls, errs, p95] = await Promise.all([
      byLabel(`sum by (${kind}) (rate(${P}calls_total${m}[${w}]))`, kind, range, signal),
      byLabel(`sum by (${kind}) (rate(${P}errors_total${m}[${w}]))`, kind, range, signal),
      byLabel(`histogram_quantile(0.95, sum by (le, ${kind}) (rate(${P}latency_milliseconds_bucket${m}[${w}])))`, kind, range, signal),
    ]);
    const rows = [...calls.entries()].sort((a, b) => b[1] - a[1]).map(([name, rate]) => ({name, rate, err: rate ? (errs.get(name) || 0) / rate : 0, p95: p95.get(name)}));
    if (!rows.length) { replace(container, container.firstChild, empty(`No ${kind}s with traffic in this time range.`)); return; }
    replace(container, container.firstChild, table([
      {label: kind === 'instance' ? 'Instance' : 'Endpoint', render: (r) => link('dashboard', {level: kind, service: labels.service, namespace: labels.namespace, [kind]: r.name, range: params.range, end: params.end}, r.name)},
      {label: 'Rate (req/s)', num: true, render: (r) => num(r.rate)},
      {label: 'Errors', num: true, render: (r) => pct(r.err)},
      {label: 'p95', num: true, render: (r) => ms(r.p95)},
    ], rows));
  } catch (e) {
    if (e.name !== 'AbortError') replace(container, container.firstChild, errorBox(e, `${kind}s`));
  }
}

export async function view(root, params, signal) {
  const level = ['instance', 'endpoint'].includes(params.level) ? params.level : 'service';
  const range = tr.resolve(params);
  const svcSelect = select('service', [['', 'Choose a service…']], params.service || '');
  svcSelect.addEventListener('change', () => tr.apply({service: svcSelect.value || undefined, namespace: undefined, level: undefined, instance: undefined, endpoint: undefined}));
  const toolbar = h('form', {class: 'toolbar', 'aria-label': 'Dashboard options', onsubmit: (e) => e.preventDefault()},
    field('Service', svcSelect), tr.controls(params, tr.apply));
  const body = h('div', {class: 'dashboard'});
  const crumbs = h('nav', {class: 'crumbs', 'aria-label': 'Breadcrumb'});
  replace(root, h('h1', {text: 'Dashboards'}), toolbar, crumbs, body);

  // Services known in the range, with their namespaces.
  let services = [];
  try {
    const res = await api.promQuery(`group by (service, namespace) (meshlens_service_calls_total{detect_point="server"})`, range.end, signal);
    services = res.map((r) => ({service: r.metric.service, namespace: r.metric.namespace || ''})).sort((a, b) => a.service.localeCompare(b.service));
    for (const sv of services) {
      const opt = h('option', {value: sv.service, text: sv.namespace ? `${sv.service} (${sv.namespace})` : sv.service});
      if (sv.service === params.service && (!params.namespace || sv.namespace === params.namespace)) opt.selected = true;
      svcSelect.append(opt);
    }
    if (params.service && !services.some((x) => x.service === params.service)) {
      svcSelect.append(h('option', {value: params.service, text: `${params.service} (no traffic in range)`, selected: true}));
    }
  } catch (e) {
    if (e.name === 'AbortError') return;
    body.append(errorBox(e, 'the service list'));
  }
  if (!params.service) {
    if (!services.length) { body.append(empty('No services have reported traffic yet.')); return; }
    body.append(h('p', {text: 'Choose a service:'}), h('ul', {class: 'service-list'},
      services.map((sv) => h('li', null, link('dashboard', {service: sv.service, namespace: sv.namespace, range: params.range, end: params.end}, sv.service), sv.namespace ? ` — ${sv.namespace}` : ''))));
    return;
  }
  const namespace = params.namespace || (services.find((x) => x.service === params.service) || {}).namespace || '';
  const labels = {service: params.service, namespace: namespace || undefined};
  let prefix = 'meshlens_service_', title = params.service;
  crumbs.append(link('dashboard', {service: params.service, namespace, range: params.range, end: params.end}, `Service ${params.service}`));
  if (level === 'instance' && params.instance) {
    prefix = 'meshlens_instance_'; labels.instance = params.instance; title = `${params.instance} (instance of ${params.service})`;
    crumbs.append(' › ', h('span', {'aria-current': 'page', text: `Instance ${params.instance}`}));
  } else if (level === 'endpoint' && params.endpoint) {
    prefix = 'meshlens_endpoint_'; labels.endpoint = params.endpoint; title = `${params.endpoint} (endpoint of ${params.service})`;
    crumbs.append(' › ', h('span', {'aria-current': 'page', text: `Endpoint ${params.endpoint}`}));
  }
  const charts = h('section', {'aria-label': 'RED charts'});
  const inbound = h('section', {class: 'rel'}), outbound = h('section', {class: 'rel'});
  const inst = h('section', {class: 'rel'}), eps = h('section', {class: 'rel'});
  body.append(h('h2', {class: 'dash-title', text: title}),
    h('p', {class: 'links'}, link('traces', {service: params.service, range: params.range}, 'Traces'), ' · ',
      link('recommendations', {service: params.service}, 'Recommendations'), ' · ',
      link('errors', {service: params.service}, 'Error log'), ' · ',
      link('topology', {namespace, range: params.range, end: params.end, sel: `n:${namespace ? namespace + '/' : ''}${params.service}`}, 'On the graph')),
    charts, h('div', {class: 'rels'}, inbound, outbound));
  if (level === 'service') body.append(h('div', {class: 'rels'}, inst, eps));
  red.render(charts, prefix, labels, params, signal);
  relations(inbound, 'inbound', {service: params.service, namespace: namespace || undefined}, params, range, signal);
  relations(outbound, 'outbound', {service: params.service, namespace: namespace || undefined}, params, range, signal);
  if (level === 'service') {
    children(inst, 'instance', labels, params, range, signal);
    children(eps, 'endpoint', labels, params, range, signal);
  }
}
