// Topology page: the service graph of a time range and namespace, laid out
// automatically, with RED charts of the selected node or edge.
import {h, s, replace, clear, loading, empty, errorBox, field, select, showTip, hideTip} from './dom.js';
import * as api from './api.js';
import {layout} from './layout.js';
import * as red from './red.js';
import * as router from './router.js';
import * as tr from './timerange.js';
import {num, pct, ms, dateTime} from './format.js';

const NODE_W = 156, NODE_H = 42;
const LABEL_LIMIT = 150; // edges; above it labels show on hover only

export function health(ratio) {
  if (!(ratio > 0)) return {cls: 'ok', glyph: '✓', word: 'healthy'};
  if (ratio < 0.01) return {cls: 'ok', glyph: '✓', word: 'healthy'};
  if (ratio < 0.05) return {cls: 'warn', glyph: '!', word: 'degraded'};
  return {cls: 'bad', glyph: '✕', word: 'failing'};
}

function mtlsText(e) {
  switch (e.mtls) {
    case 'mutual_tls': return 'mTLS';
    case 'none': return 'plaintext';
    case 'mixed': return `mixed mTLS ${pct(e.mtlsRatio)}`;
    default: return 'mTLS unknown';
  }
}

// fromIstio builds a graph from istio_* series when the topology API is
// not available, so the page still shows the mesh.
async function fromIstio(params, range, signal) {
  const w = `${Math.max(60, Math.round(range.rangeSec))}s`;
  const by = 'source_workload_namespace,source_canonical_service,destination_service_namespace,destination_canonical_service,request_protocol,connection_security_policy';
  const base = 'istio_requests_total{reporter="destination"';
  const [calls, errs, p95] = await Promise.all([
    api.promQuery(`sum by (${by}) (rate(${base}}[${w}]))`, range.end, signal),
    api.promQuery(`sum by (${by}) (rate(${base},response_code=~"5.."}[${w}]))`, range.end, signal),
    api.promQuery(`histogram_quantile(0.95, sum by (le,${by}) (rate(istio_request_duration_milliseconds_bucket{reporter="destination"}[${w}])))`, range.end, signal),
  ]);
  const key = (m) => [m.source_workload_namespace, m.source_canonical_service, m.destination_service_namespace, m.destination_canonical_service, m.request_protocol, m.connection_security_policy].join('|');
  const errBy = new Map(errs.map((r) => [key(r.metric), Number(r.value[1])]));
  const p95By = new Map(p95.map((r) => [key(r.metric), Number(r.value[1])]));
  const nodes = new Map(), edges = [];
  const node = (ns, name) => {
    const id = ns ? `${ns}/${name}` : name;
    if (!nodes.has(id)) nodes.set(id, {id, name, namespace: ns, kind: 'service', unknown: name === 'unknown', inbound: {requestRate: 0, errorRate: 0, errorRatio: 0}, outboundRequestRate: 0});
    return nodes.get(id);
  };
  for (const r of calls) {
    const m = r.metric, rate = Number(r.value[1]);
    const a = node(m.source_workload_namespace, m.source_canonical_service || 'unknown');
    const b = node(m.destination_service_namespace, m.destination_canonical_service || 'unknown');
    const er = errBy.get(key(m)) || 0;
    b.inbound.requestRate += rate; b.inbound.errorRate += er;
    a.outboundRequestRate += rate;
    const p = p95By.get(key(m));
    edges.push({id: `${a.id}->${b.id}`, source: a.id, target: b.id, protocol: m.request_protocol || 'http',
      mtls: m.connection_security_policy || 'unknown', requestRate: rate, errorRate: er, errorRatio: rate ? er / rate : 0,
      latencyMs: Number.isFinite(p) ? {p95: p} : undefined, reporter: 'destination'});
  }
  for (const n of nodes.values()) n.inbound.errorRatio = n.inbound.requestRate ? n.inbound.errorRate / n.inbound.requestRate : 0;
  let ns = Array.from(nodes.values()), es = edges;
  if (params.namespace) {
    const keep = new Set(ns.filter((n) => n.namespace === params.namespace).map((n) => n.id));
    es = es.filter((e) => keep.has(e.source) || keep.has(e.target));
    const touched = new Set(es.flatMap((e) => [e.source, e.target]));
    ns = ns.filter((n) => keep.has(n.id) || touched.has(n.id));
  }
  return {level: 'service', nodes: ns, edges: es, fallback: true};
}

function edgePath(points) {
  const [x0, y0] = points[0];
  let d = `M${x0 + NODE_W / 2},${y0}`;
  for (let i = 1; i < points.length; i++) {
    const [ax, ay] = i === 1 ? [x0 + NODE_W / 2, y0] : points[i - 1];
    const last = i === points.length - 1;
    const [bx, by] = last ? [points[i][0] - NODE_W / 2 - 4, points[i][1]] : points[i];
    const cx = (ax + bx) / 2;
    d += ` C${cx},${ay} ${cx},${by} ${bx},${by}`;
  }
  return d;
}

function labelPoint(points) {
  if (points.length === 2) {
    return [(points[0][0] + points[1][0]) / 2, (points[0][1] + points[1][1]) / 2];
  }
  const m = points[points.length >> 1];
  return m;
}

function trunc(str, n) { return str.length > n ? str.slice(0, n - 1) + '…' : str; }

function matches(node, name) {
  return node.id === name || node.name === name || `${node.name}.${node.namespace}` === name ||
    (node.service && (node.service === name || `${node.service}.${node.namespace}` === name));
}

// drawGraph renders the graph into an SVG with pan and zoom. It returns the
// SVG; onSelect(kind, item) is called for clicks and Enter.
export function drawGraph(graph, {selected, highlight = [], onSelect}) {
  const lay = layout(graph.nodes, graph.edges, {colGap: NODE_W + 186, rowGap: NODE_H + 28});
  const pad = 30;
  const full = {x: -NODE_W / 2 - pad, y: -NODE_H / 2 - pad, w: lay.width + NODE_W + 2 * pad, h: lay.height + NODE_H + 2 * pad};
  const svg = s('svg', {class: 'graph', role: 'group', 'aria-label': `Service graph: ${graph.nodes.length} nodes, ${graph.edges.length} edges`,
    viewBox: `${full.x} ${full.y} ${full.w} ${full.h}`, dataset: {nodes: String(graph.nodes.length), edges: String(graph.edges.length)}});
  const defs = s('defs');
  for (const c of ['ok', 'warn', 'bad', 'hl']) {
    defs.append(s('marker', {id: `arrow-${c}`, viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 11, markerHeight: 11, markerUnits: 'userSpaceOnUse', orient: 'auto-start-reverse', class: `arrow ${c}`},
      s('path', {d: 'M0,0 L10,5 L0,10 z'})));
  }
  svg.append(defs);
  const world = s('g', {class: 'world'});
  svg.append(world);

  // Highlighted path segments (recommendation inconsistencies).
  const hlPairs = [];
  for (const path of highlight) for (let i = 1; i < path.length; i++) hlPairs.push([path[i - 1], path[i]]);
  const nodeById = new Map(graph.nodes.map((n) => [n.id, n]));
  const isHL = (e) => hlPairs.some(([a, b]) => matches(nodeById.get(e.source) || {}, a) && matches(nodeById.get(e.target) || {}, b));
  const hlNodes = new Set(graph.nodes.filter((n) => highlight.some((p) => p.some((x) => matches(n, x)))).map((n) => n.id));

  const maxRate = Math.max(1e-9, ...graph.edges.map((e) => e.requestRate || 0));
  const showLabels = graph.edges.length <= LABEL_LIMIT;
  const edgeLayer = s('g', {class: 'edges'}), labelLayer = s('g', {class: 'edge-labels'}), nodeLayer = s('g', {class: 'nodes'});
  world.append(edgeLayer, labelLayer, nodeLayer);

  for (const {edge: e, points} of lay.edges) {
    const hc = health(e.errorRatio);
    const hl = isHL(e);
    const src = nodeById.get(e.source), dst = nodeById.get(e.target);
    const p95 = e.latencyMs ? ms(e.latencyMs.p95) : 'no latency';
    const tcp = e.tcp && !(e.requestRate > 0) ? (e.tcp.sentBytesPerSecond || 0) + (e.tcp.receivedBytesPerSecond || 0) : null;
    const label1 = tcp !== null ? `${num(tcp)} B/s · ${num(e.tcp.connectionsOpenedPerSecond || 0)} conn/s` : `${num(e.requestRate || 0)} rps · p95 ${p95}`;
    const label2 = `${e.protocol || '?'} · ${mtlsText(e)}${e.errorRatio > 0 ? ` · ${pct(e.errorRatio)} err` : ''}`;
    const desc = `${src ? src.name : e.source} to ${dst ? dst.name : e.target}: ${label1}, ${label2}, ${hc.word}`;
    const g = s('g', {class: `edge ${hc.cls}${hl ? ' hl' : ''}${selected === 'e:' + e.id ? ' selected' : ''}`, tabindex: '0', role: 'button', 'aria-label': desc, dataset: {id: e.id, source: src ? src.name : e.source, target: dst ? dst.name : e.target}});
    const d = edgePath(points);
    const width = 1.5 + 3.5 * Math.sqrt((e.requestRate || 0) / maxRate);
    g.append(s('path', {class: 'hit', d}), s('path', {class: 'line', d, 'stroke-width': width.toFixed(2), 'marker-end': `url(#arrow-${hl ? 'hl' : hc.cls})`}), s('title', {text: desc}));
    edgeLayer.append(g);
    const [lx, ly] = labelPoint(points);
    const lab = s('g', {class: `edge-label ${hc.cls}${showLabels ? '' : ' on-hover'}`, transform: `translate(${lx},${ly})`, 'aria-hidden': 'true'},
      s('rect', {x: -84, y: -18, width: 168, height: 34, rx: 4}),
      s('text', {y: -4, 'text-anchor': 'middle', text: label1}),
      s('text', {y: 10, 'text-anchor': 'middle', class: 'sub', text: (hc.cls !== 'ok' ? hc.glyph + ' ' : '') + label2}));
    labelLayer.append(lab);
    const pick = () => onSelect('edge', e);
    g.addEventListener('click', pick);
    g.addEventListener('keydown', (ev) => { if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); pick(); } });
    g.addEventListener('pointerenter', () => lab.classList.add('hover'));
    g.addEventListener('pointerleave', () => lab.classList.remove('hover'));
    g.addEventListener('focus', () => lab.classList.add('hover'));
    g.addEventListener('blur', () => lab.classList.remove('hover'));
  }

  for (const n of graph.nodes) {
    const p = lay.nodes.get(n.id);
    const hc = health(n.inbound && n.inbound.errorRatio);
    const inb = n.inbound || {};
    const sub = `${n.namespace || ''}${inb.requestRate ? ` · ${num(inb.requestRate)} rps` : ''}${inb.errorRatio ? ` · ${pct(inb.errorRatio)} err` : ''}`;
    const label = `${n.kind || 'service'} ${n.name}${n.service ? ` of ${n.service}` : ''}, ${sub}, ${hc.word}`;
    const g = s('g', {class: `node ${hc.cls}${n.unknown ? ' unknown' : ''}${hlNodes.has(n.id) ? ' hl' : ''}${selected === 'n:' + n.id ? ' selected' : ''}`,
      transform: `translate(${p.x - NODE_W / 2},${p.y - NODE_H / 2})`, tabindex: '0', role: 'button', 'aria-label': label, dataset: {id: n.id, name: n.name}});
    g.append(s('rect', {width: NODE_W, height: NODE_H, rx: 8}),
      s('text', {x: 10, y: 18, class: 'glyph', 'aria-hidden': 'true', text: hc.glyph}),
      s('text', {x: 24, y: 18, class: 'name', text: trunc(n.name, 18)}),
      s('text', {x: 24, y: 33, class: 'sub', text: trunc(sub, 25)}),
      s('title', {text: `${n.name}${n.service ? ` (${n.service})` : ''}\n${sub}`}));
    if (hlNodes.has(n.id)) g.append(s('text', {x: NODE_W - 8, y: 18, 'text-anchor': 'end', class: 'badge', text: '⚠'}));
    const pick = () => onSelect('node', n);
    g.addEventListener('click', pick);
    g.addEventListener('keydown', (ev) => { if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); pick(); } });
    nodeLayer.append(g);
  }
  enablePanZoom(svg, full);
  return svg;
}

// initialView fits the graph into the SVG's box, but never magnifies a
// small graph and never shrinks a big one below a readable 0.7: then it
// starts at the left (the callers) and the rest is a pan or zoom away.
function initialView(svg, full) {
  const cw = svg.clientWidth || 900, ch = svg.clientHeight || 500;
  const scale = Math.max(0.7, Math.min(1, cw / full.w, ch / full.h));
  const w = cw / scale, h = ch / scale;
  const x = w >= full.w ? full.x - (w - full.w) / 2 : full.x;
  const y = full.y - (h - full.h) / 2;
  return {x, y, w, h};
}

function enablePanZoom(svg, full) {
  let vb = {...full};
  const apply = () => svg.setAttribute('viewBox', `${vb.x} ${vb.y} ${vb.w} ${vb.h}`);
  const zoom = (f, cx = 0.5, cy = 0.5) => {
    const nw = Math.min(full.w * 4, Math.max(200, vb.w * f)), nh = nw * vb.h / vb.w;
    vb.x += (vb.w - nw) * cx; vb.y += (vb.h - nh) * cy; vb.w = nw; vb.h = nh;
    apply();
  };
  svg.addEventListener('wheel', (ev) => {
    ev.preventDefault();
    const r = svg.getBoundingClientRect();
    zoom(ev.deltaY > 0 ? 1.15 : 1 / 1.15, (ev.clientX - r.left) / r.width, (ev.clientY - r.top) / r.height);
  }, {passive: false});
  let drag = null;
  svg.addEventListener('pointerdown', (ev) => {
    if (ev.target.closest('.node, .edge')) return;
    drag = {x: ev.clientX, y: ev.clientY, vb: {...vb}};
    svg.setPointerCapture(ev.pointerId);
    svg.classList.add('panning');
  });
  svg.addEventListener('pointermove', (ev) => {
    if (!drag) return;
    const r = svg.getBoundingClientRect();
    const scale = Math.max(vb.w / r.width, vb.h / r.height);
    vb.x = drag.vb.x - (ev.clientX - drag.x) * scale;
    vb.y = drag.vb.y - (ev.clientY - drag.y) * scale;
    apply();
  });
  svg.addEventListener('pointerup', () => { drag = null; svg.classList.remove('panning'); });
  svg.zoomBy = zoom;
  svg.fit = () => {
    const cw = svg.clientWidth || 900, ch = svg.clientHeight || 500;
    const scale = Math.min(cw / full.w, ch / full.h);
    vb = {w: cw / scale, h: ch / scale};
    vb.x = full.x - (vb.w - full.w) / 2; vb.y = full.y - (vb.h - full.h) / 2;
    apply();
  };
  svg.reset = () => {
    // Size the box to the graph so a short graph leaves no empty band.
    const sc = Math.max(0.7, Math.min(1, (svg.clientWidth || 900) / full.w));
    const maxH = Math.max(420, window.innerHeight - 260);
    svg.style.height = `${Math.round(Math.max(320, Math.min(maxH, full.h * sc + 24)))}px`;
    vb = initialView(svg, full);
    apply();
  };
}

function legend() {
  const item = (cls, glyph, text) => h('li', null,
    s('svg', {width: 34, height: 12, 'aria-hidden': 'true', class: `edge ${cls}`}, s('path', {class: 'line', d: 'M2,6 L32,6'})),
    h('span', {text: `${glyph} ${text}`}));
  return h('ul', {class: 'legend graph-legend', 'aria-label': 'Legend'},
    item('ok', '✓', 'errors < 1%'), item('warn', '!', '1–5% errors (dashed)'), item('bad', '✕', '≥ 5% errors (dotted)'),
    item('hl', '⚠', 'recommendation inconsistency'),
    h('li', {text: 'Line width: request rate. Labels: rate, p95, protocol, mTLS.'}));
}

function sliderControl(params) {
  const range = tr.resolve(params);
  const now = Date.now() / 1000;
  const offset = params.end ? Math.max(-1440, Math.min(0, Math.round((range.end - now) / 60))) : 0;
  const input = h('input', {type: 'range', min: -1440, max: 0, step: 5, value: offset, 'aria-valuetext': offset ? `${-offset} minutes ago` : 'now'});
  const out = h('output', {text: offset ? `${dateTime(range.end * 1000)} (${-offset} min ago)` : 'now'});
  input.addEventListener('input', () => {
    const v = Number(input.value);
    out.textContent = v ? `${dateTime((now + v * 60) * 1000)} (${-v} min ago)` : 'now';
    input.setAttribute('aria-valuetext', v ? `${-v} minutes ago` : 'now');
  });
  input.addEventListener('change', () => {
    const v = Number(input.value);
    tr.apply({end: v ? String(Math.round(now + v * 60)) : undefined, start: undefined});
  });
  return h('div', {class: 'slider'}, field('Graph at', input), out);
}

export async function view(root, params, signal) {
  const level = params.level || 'service';
  const nsSelect = select('namespace', [['', 'All namespaces']], params.namespace || '');
  nsSelect.addEventListener('change', () => tr.apply({namespace: nsSelect.value || undefined, sel: undefined}));
  const levelSelect = select('level', [['service', 'Services'], ['instance', 'Instances'], ['endpoint', 'Endpoints']], level);
  levelSelect.addEventListener('change', () => tr.apply({level: levelSelect.value, sel: undefined}));
  const inc = h('input', {type: 'checkbox', name: 'inconsistencies'});
  inc.checked = params.incons === '1';
  inc.addEventListener('change', () => tr.apply({incons: inc.checked ? '1' : undefined}));
  const toolbar = h('form', {class: 'toolbar', role: 'search', 'aria-label': 'Graph options', onsubmit: (e) => e.preventDefault()},
    field('Namespace', nsSelect), field('Level', levelSelect), tr.controls(params, tr.apply), sliderControl(params),
    h('div', {class: 'field check'}, inc, h('label', {for: inc.id || (inc.id = 'incons'), text: 'Show recommendation inconsistencies'})));
  const notice = h('div', {class: 'notices'});
  const stage = h('div', {class: 'stage'}, loading('the service graph'));
  const panel = h('aside', {class: 'panel', 'aria-label': 'Selection details'});
  const grid = h('div', {class: 'topology'}, stage, panel);
  panel.hidden = true;
  replace(root, h('h1', {text: 'Topology'}), toolbar, notice, grid);

  const range = tr.resolve(params);
  api.promLabelValues('namespace', 'meshlens_service_calls_total', range.start, range.end, signal)
    .then((vals) => { for (const v of vals) if (v !== params.namespace) nsSelect.append(h('option', {value: v, text: v})); })
    .catch(() => { /* the graph's own error is what matters */ });

  let graph;
  performance.clearMarks();
  try {
    graph = await api.topology({start: range.start.toFixed(3), end: range.end.toFixed(3), namespace: params.namespace, level}, signal);
  } catch (e) {
    if (e.name === 'AbortError') return;
    if (e.status === 404) {
      notice.append(h('p', {class: 'state warn', role: 'status', text: `The topology API is not available (${e.message}); showing the service-level graph built from istio_* metrics.`}));
      try { graph = await fromIstio(params, range, signal); } catch (e2) {
        if (e2.name !== 'AbortError') replace(stage, errorBox(e2, 'the service graph'));
        return;
      }
    } else {
      replace(stage, errorBox(e, 'the service graph'));
      return;
    }
  }
  performance.mark('meshlens:graph-data');
  graph.nodes ||= []; graph.edges ||= [];
  if (graph.truncated) notice.append(h('p', {class: 'state warn', role: 'status', text: 'The graph was truncated to the busiest nodes and edges.'}));
  if (!graph.nodes.length) {
    replace(stage, empty(`No traffic between ${level}s in this time range${params.namespace ? ` in namespace ${params.namespace}` : ''}. Is traffic flowing? Try a longer range.`));
    performance.mark('meshlens:graph-rendered');
    return;
  }
  let highlight = [];
  if (params.hl) highlight.push(params.hl.split(','));
  if (params.incons === '1') {
    try {
      const recs = await api.recommendations({}, signal);
      for (const r of recs.recommendations || []) for (const i of r.inconsistencies || []) if (i.path && i.path.length) highlight.push(i.path);
      if (!highlight.length) notice.append(h('p', {class: 'state empty', role: 'status', text: 'No inconsistencies along call chains.'}));
    } catch (e) {
      if (e.name === 'AbortError') return;
      notice.append(errorBox(e, 'recommendation inconsistencies'));
    }
  }
  const renderAll = () => {
    const cur = router.current().params.sel;
    const svg = drawGraph(graph, {selected: cur, highlight, onSelect});
    const zoomBar = h('div', {class: 'zoombar', role: 'group', 'aria-label': 'Zoom'},
      h('button', {type: 'button', class: 'btn', 'aria-label': 'Zoom in', onclick: () => svg.zoomBy(1 / 1.3)}, '+'),
      h('button', {type: 'button', class: 'btn', 'aria-label': 'Zoom out', onclick: () => svg.zoomBy(1.3)}, '−'),
      h('button', {type: 'button', class: 'btn', onclick: () => svg.fit()}, 'Fit all'),
      h('button', {type: 'button', class: 'btn', onclick: () => svg.reset()}, 'Reset'));
    replace(stage, zoomBar, svg, legend(),
      h('p', {class: 'summary', text: `${graph.nodes.length} ${level} nodes, ${graph.edges.length} edges${graph.fallback ? ' (from istio_* metrics)' : ''}. Click or press Enter on a node or edge for its charts.`}));
    return svg;
  };
  const onSelect = (kind, item) => {
    router.update({sel: `${kind === 'node' ? 'n' : 'e'}:${item.id}`});
    for (const el of stage.querySelectorAll('.selected')) el.classList.remove('selected');
    const el = stage.querySelector(`${kind === 'node' ? '.node' : '.edge'}[data-id="${CSS.escape(item.id)}"]`);
    if (el) el.classList.add('selected');
    showPanel(panel, graph, kind, item, router.current().params, signal);
  };
  const svg = renderAll();
  svg.reset();
  requestAnimationFrame(() => {
    performance.mark('meshlens:graph-rendered');
    document.body.dataset.graphRendered = String(Date.now());
  });
  const cur = params.sel || '';
  if (cur.startsWith('n:')) { const n = graph.nodes.find((x) => x.id === cur.slice(2)); if (n) showPanel(panel, graph, 'node', n, params, signal); }
  if (cur.startsWith('e:')) { const e = graph.edges.find((x) => x.id === cur.slice(2)); if (e) showPanel(panel, graph, 'edge', e, params, signal); }
}

function closeButton(panel) {
  return h('button', {type: 'button', class: 'btn close', 'aria-label': 'Close the details', onclick: () => {
    panel.hidden = true;
    panel.parentElement.classList.remove('with-panel');
    for (const el of document.querySelectorAll('svg.graph .selected')) el.classList.remove('selected');
    router.update({sel: undefined});
  }}, '×');
}

// scopeOf maps a graph node to the meshlens_<scope>_ family and its labels.
export function scopeOf(n) {
  switch (n.kind) {
    case 'instance': return {prefix: 'meshlens_instance_', labels: {service: n.service, namespace: n.namespace, instance: n.name}, page: {level: 'instance', service: n.service, namespace: n.namespace, instance: n.name}};
    case 'endpoint': return {prefix: 'meshlens_endpoint_', labels: {service: n.service, namespace: n.namespace, endpoint: n.name}, page: {level: 'endpoint', service: n.service, namespace: n.namespace, endpoint: n.name}};
    default: return {prefix: 'meshlens_service_', labels: {service: n.name, namespace: n.namespace}, page: {level: 'service', service: n.name, namespace: n.namespace}};
  }
}

function relationScope(src, dst) {
  switch (src.kind) {
    case 'instance': return {prefix: 'meshlens_instance_relation_', labels: {source_service: src.service, source_instance: src.name, destination_service: dst.service, destination_instance: dst.name}};
    case 'endpoint': return {prefix: 'meshlens_endpoint_relation_', labels: {source_service: src.service, source_endpoint: src.name, destination_service: dst.service, destination_endpoint: dst.name}};
    default: return {prefix: 'meshlens_service_relation_', labels: {source_service: src.name, source_namespace: src.namespace, destination_service: dst.name, destination_namespace: dst.namespace}};
  }
}

function showPanel(panel, graph, kind, item, params, signal) {
  // The panel takes room from the graph only while something is selected.
  panel.hidden = false;
  panel.parentElement.classList.add('with-panel');
  const charts = h('div');
  const dl = (pairs) => h('dl', {class: 'facts'}, pairs.flatMap(([k, v]) => [h('dt', {text: k}), h('dd', {text: v})]));
  if (kind === 'node') {
    const sc = scopeOf(item);
    const inb = item.inbound || {};
    replace(panel, closeButton(panel), h('h2', {text: item.name}),
      dl([['Kind', item.kind || 'service'], ['Namespace', item.namespace || '—'], ...(item.service ? [['Service', item.service]] : []),
        ['Inbound rate', `${num(inb.requestRate || 0)} req/s`], ['Error rate', `${pct(inb.errorRatio || 0)} (${health(inb.errorRatio).word})`],
        ['p50 / p95 / p99', inb.latencyMs ? `${ms(inb.latencyMs.p50)} / ${ms(inb.latencyMs.p95)} / ${ms(inb.latencyMs.p99)}` : '—'],
        ['Outbound rate', `${num(item.outboundRequestRate || 0)} req/s`]]),
      h('p', {class: 'links'}, h('a', {href: router.href('dashboard', {...sc.page, range: params.range, end: params.end}), text: 'Open dashboard'}), ' · ',
        h('a', {href: router.href('traces', {service: item.service || item.name, range: params.range}), text: 'Traces'}), ' · ',
        h('a', {href: router.href('recommendations', {service: item.service || item.name}), text: 'Recommendations'}), ' · ',
        h('a', {href: router.href('errors', {service: item.service || item.name}), text: 'Error log'})),
      charts);
    red.render(charts, sc.prefix, sc.labels, params, signal, {compact: true});
  } else {
    const src = graph.nodes.find((n) => n.id === item.source) || {name: item.source}, dst = graph.nodes.find((n) => n.id === item.target) || {name: item.target};
    const sc = relationScope(src, dst);
    replace(panel, closeButton(panel), h('h2', {text: `${src.name} → ${dst.name}`}),
      dl([['Protocol', item.protocol || '—'], ['Security', mtlsText(item)], ['Reported by', (item.reporters || [item.reporter]).filter(Boolean).join(', ') || '—'],
        ['Rate', `${num(item.requestRate || 0)} req/s`], ['Error rate', `${pct(item.errorRatio || 0)} (${health(item.errorRatio).word})`],
        ['p50 / p95 / p99', item.latencyMs ? `${ms(item.latencyMs.p50)} / ${ms(item.latencyMs.p95)} / ${ms(item.latencyMs.p99)}` : '—']]),
      h('p', {class: 'links'}, h('a', {href: router.href('traces', {service: src.service || src.name, range: params.range}), text: 'Traces from the caller'}), ' · ',
        h('a', {href: router.href('recommendations', {service: dst.service || dst.name}), text: 'Recommendations'})),
      charts);
    red.render(charts, sc.prefix, sc.labels, params, signal, {compact: true});
  }
  panel.focus?.();
}
