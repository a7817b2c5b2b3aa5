// Trace waterfall: the span tree with timings, tags, logs and errors.
// Envoy's Zipkin spans share one span id between the client half (in the
// caller's sidecar) and the server half (in the callee's); they are shown
// as one hop with both sides. Rows are virtualised so a trace of thousands
// of spans scrolls smoothly: only the visible rows exist in the DOM, and
// they are reused.
import {h, replace, clear, loading, empty, errorBox, table} from './dom.js';
import * as api from './api.js';
import * as router from './router.js';
import {us, dateTime} from './format.js';

const ROW_H = 24;
const OVERSCAN = 12;

export function serviceOf(trace, sp) {
  const p = trace.processes && trace.processes[sp.processID];
  return p ? p.serviceName : sp.processID || '?';
}
function tag(sp, key) {
  const t = (sp.tags || []).find((x) => x.key === key);
  return t ? t.value : undefined;
}
export function isErrorSpan(sp) {
  const e = tag(sp, 'error');
  if (e === true || e === 'true') return true;
  const st = tag(sp, 'otel.status_code');
  if (st === 'ERROR') return true;
  const code = Number(tag(sp, 'http.status_code'));
  return code >= 500;
}
function kindOf(sp) { return String(tag(sp, 'span.kind') || '').toLowerCase(); }

// buildHops groups spans by span id into hops and links them into a tree.
export function buildHops(trace) {
  const spans = trace.spans || [];
  const byId = new Map();
  for (const sp of spans) {
    if (!byId.has(sp.spanID)) byId.set(sp.spanID, []);
    byId.get(sp.spanID).push(sp);
  }
  const hops = [];
  const hopById = new Map();
  for (const [id, group] of byId) {
    const client = group.find((x) => kindOf(x) === 'client');
    const server = group.find((x) => kindOf(x) === 'server' && x !== client);
    let parts;
    if (group.length >= 2 && client && server) parts = {client, server, extra: group.filter((x) => x !== client && x !== server)};
    else parts = {single: group[0], extra: group.slice(1)};
    const all = group;
    const start = Math.min(...all.map((x) => x.startTime));
    const end = Math.max(...all.map((x) => x.startTime + x.duration));
    const main = parts.single || parts.client;
    const parentRef = all.map((x) => (x.references || []).find((r) => r.refType === 'CHILD_OF' && r.spanID !== id) || (x.references || []).find((r) => r.spanID !== id)).find(Boolean);
    const hop = {id, ...parts, spans: all, start, end, op: (parts.server || main).operationName,
      service: parts.single ? serviceOf(trace, parts.single) : `${serviceOf(trace, parts.client)} → ${serviceOf(trace, parts.server)}`,
      error: all.some(isErrorSpan), parent: parentRef ? parentRef.spanID : null, children: [], depth: 0};
    hops.push(hop);
    hopById.set(id, hop);
  }
  // Spans that share an id with other spans but are not a client/server
  // pair (duplicates) still count; extras are listed in the details.
  const roots = [];
  for (const hp of hops) {
    const p = hp.parent && hopById.get(hp.parent);
    if (p && p !== hp) p.children.push(hp); else roots.push(hp);
  }
  const byStart = (a, b) => a.start - b.start;
  roots.sort(byStart);
  for (const hp of hops) hp.children.sort(byStart);
  // Depths, iteratively (deep traces must not overflow the stack); a
  // reference cycle is cut where it is found.
  const seen = new Set();
  const stack = roots.map((r) => [r, 0]).reverse();
  while (stack.length) {
    const [hp, d] = stack.pop();
    if (seen.has(hp)) continue;
    seen.add(hp);
    hp.depth = d;
    for (let i = hp.children.length - 1; i >= 0; i--) stack.push([hp.children[i], d + 1]);
  }
  for (const hp of hops) if (!seen.has(hp)) { hp.depth = 0; roots.push(hp); seen.add(hp); }
  return {hops, roots, spans: spans.length};
}

// flatten lists the visible hops in tree order.
function flatten(roots, collapsed) {
  const out = [];
  const stack = roots.slice().reverse();
  const seen = new Set();
  while (stack.length) {
    const hp = stack.pop();
    if (seen.has(hp)) continue;
    seen.add(hp);
    out.push(hp);
    if (!collapsed.has(hp.id)) for (let i = hp.children.length - 1; i >= 0; i--) stack.push(hp.children[i]);
  }
  return out;
}

function kvTable(caption, kvs) {
  if (!kvs || !kvs.length) return null;
  return table([{label: 'Key', key: 'key'}, {label: 'Value', render: (r) => h('code', {text: typeof r.value === 'object' ? JSON.stringify(r.value) : String(r.value)})}], kvs, {caption, class: 'kv'});
}

function spanDetails(trace, sp, title, t0) {
  const logs = (sp.logs || []).map((l) => h('li', null, h('span', {class: 'logt', text: `+${us(l.timestamp - t0)} `}),
    ...(l.fields || []).map((f) => h('span', {class: 'logf'}, h('b', {text: f.key}), '=', h('code', {text: String(f.value)}), ' '))));
  const proc = trace.processes && trace.processes[sp.processID];
  return h('section', {class: `span-side${isErrorSpan(sp) ? ' err' : ''}`},
    h('h3', {text: `${title}${title ? ': ' : ''}${serviceOf(trace, sp)} — ${sp.operationName}`}),
    h('p', {class: 'meta', text: `${isErrorSpan(sp) ? '⚠ error · ' : ''}start +${us(sp.startTime - t0)} · duration ${us(sp.duration)} · span ${sp.spanID}`}),
    kvTable('Tags', sp.tags), logs.length ? h('div', null, h('h4', {text: 'Logs / events'}), h('ul', {class: 'logs'}, logs)) : null,
    proc ? kvTable('Process', proc.tags) : null,
    (sp.warnings || []).length ? h('ul', {class: 'warnings'}, sp.warnings.map((w) => h('li', {text: w}))) : null);
}

function hopDetails(trace, hop, t0) {
  const box = h('div', {class: 'hop-details'});
  if (hop.client) {
    box.append(h('p', {class: 'shared-note', text: 'Envoy shared span: the client half (caller sidecar) and the server half (callee sidecar) carry the same span id; both are shown.'}),
      h('div', {class: 'sides'}, spanDetails(trace, hop.client, 'Client side', t0), spanDetails(trace, hop.server, 'Server side', t0)));
  } else box.append(spanDetails(trace, hop.single, '', t0));
  for (const x of hop.extra || []) box.append(spanDetails(trace, x, 'Also with this span id', t0));
  return box;
}

// renderWaterfall builds the waterfall of trace into container.
export function renderWaterfall(container, trace, {selected, onSelect} = {}) {
  const {hops, roots, spans} = buildHops(trace);
  const t0 = Math.min(...hops.map((x) => x.start));
  const t1 = Math.max(...hops.map((x) => x.end));
  const total = Math.max(1, t1 - t0);
  const pairs = hops.filter((x) => x.client).length;
  const services = new Set((trace.spans || []).map((sp) => serviceOf(trace, sp)));
  const errors = (trace.spans || []).filter(isErrorSpan).length;
  const collapsed = new Set();
  let visible = flatten(roots, collapsed);
  let active = Math.max(0, visible.findIndex((x) => x.id === selected));

  const header = h('div', {class: 'wf-summary', dataset: {spans: String(spans), hops: String(hops.length)}},
    h('span', {text: `${spans} spans`}), h('span', {text: `${hops.length} rows (${pairs} client/server pair${pairs === 1 ? '' : 's'} shown as one hop)`}),
    h('span', {text: `${services.size} services`}), h('span', {text: `duration ${us(total)}`}), h('span', {text: `started ${dateTime(t0 / 1000)}`}),
    errors ? h('span', {class: 'err', text: `⚠ ${errors} error span${errors > 1 ? 's' : ''}`}) : null);
  const ruler = h('div', {class: 'wf-ruler', 'aria-hidden': 'true'}, h('div', {class: 'wf-label-col', text: 'Service → operation'}));
  const ticks = h('div', {class: 'wf-ticks'});
  for (let i = 0; i <= 4; i++) {
    const tk = h('span', {text: us(total * i / 4)});
    tk.style.left = `${i * 25}%`;
    ticks.append(tk);
  }
  ruler.append(ticks);
  const scroller = h('div', {class: 'wf-scroll', tabindex: '0', role: 'tree', 'aria-label': `Span tree, ${hops.length} rows. Arrow keys move, right and left expand and collapse, Enter shows details.`});
  const spacer = h('div', {class: 'wf-spacer'});
  scroller.append(spacer);
  const details = h('section', {class: 'wf-details', 'aria-label': 'Span details', 'aria-live': 'polite'});
  replace(container, header, ruler, scroller, details);

  const pool = [];
  const mkRow = () => {
    const toggle = h('button', {type: 'button', class: 'tog', tabindex: '-1', 'aria-hidden': 'true'});
    const svc = h('span', {class: 'svc'}), op = h('span', {class: 'op'}), glyph = h('span', {class: 'glyph'});
    const label = h('div', {class: 'wf-label-col'}, toggle, glyph, svc, op);
    const bar = h('div', {class: 'bar'}), inner = h('div', {class: 'bar inner'}), dur = h('span', {class: 'dur'});
    const tl = h('div', {class: 'wf-tl'}, bar, inner, dur);
    const el = h('div', {class: 'wf-row', role: 'treeitem'}, label, tl);
    el.style.height = `${ROW_H}px`;
    const row = {el, toggle, svc, op, glyph, label, bar, inner, dur, idx: -1, hop: null};
    toggle.addEventListener('click', (ev) => { ev.stopPropagation(); if (row.hop) toggleHop(row.hop); });
    el.addEventListener('click', () => { if (row.idx >= 0) select(row.idx, true); });
    scroller.append(el);
    return row;
  };
  const fill = (row, idx) => {
    const hp = visible[idx];
    row.idx = idx; row.hop = hp;
    row.el.id = `wf-${idx}`;
    row.el.style.transform = `translateY(${idx * ROW_H}px)`;
    row.el.className = `wf-row${hp.error ? ' err' : ''}${hp.client ? ' hop' : ''}${idx === active ? ' active' : ''}`;
    row.el.setAttribute('aria-level', String(hp.depth + 1));
    row.el.setAttribute('aria-selected', String(idx === active));
    if (hp.children.length) row.el.setAttribute('aria-expanded', String(!collapsed.has(hp.id))); else row.el.removeAttribute('aria-expanded');
    row.label.style.paddingLeft = `${4 + Math.min(hp.depth, 40) * 12}px`;
    row.toggle.textContent = hp.children.length ? (collapsed.has(hp.id) ? '▸' : '▾') : '';
    row.toggle.disabled = !hp.children.length;
    row.glyph.textContent = hp.error ? '⚠' : '';
    row.svc.textContent = hp.service;
    row.op.textContent = ` ${hp.op}`;
    row.el.title = `${hp.service} ${hp.op}`;
    const main = hp.client || hp.single;
    row.bar.style.left = `${(main.startTime - t0) / total * 100}%`;
    row.bar.style.width = `${Math.max(0.2, main.duration / total * 100)}%`;
    if (hp.server) {
      row.inner.hidden = false;
      row.inner.style.left = `${(hp.server.startTime - t0) / total * 100}%`;
      row.inner.style.width = `${Math.max(0.2, hp.server.duration / total * 100)}%`;
      row.dur.textContent = `${us(hp.client.duration)} client / ${us(hp.server.duration)} server`;
    } else {
      row.inner.hidden = true;
      row.dur.textContent = us(main.duration);
    }
    // Duration text: left of the bar when there is room, else right of
    // it, else inside its end.
    const startF = (hp.start - t0) / total, endF = (hp.end - t0) / total;
    row.dur.classList.toggle('inside', startF <= 0.25 && endF >= 0.75);
    if (startF > 0.25) { row.dur.style.left = ''; row.dur.style.right = `calc(${(1 - startF) * 100}% + 4px)`; }
    else if (endF < 0.75) { row.dur.style.right = ''; row.dur.style.left = `calc(${endF * 100}% + 4px)`; }
    else { row.dur.style.left = ''; row.dur.style.right = `calc(${(1 - endF) * 100}% + 4px)`; }
  };
  let frame = 0;
  // Main-thread cost of each redraw, read by the scroll benchmark.
  const perf = {draws: 0, totalMs: 0, maxMs: 0, samples: []};
  scroller.wfPerf = perf;
  const draw = () => {
    const t0 = performance.now();
    drawRows();
    const dt = performance.now() - t0;
    perf.draws++; perf.totalMs += dt; perf.maxMs = Math.max(perf.maxMs, dt);
    if (perf.samples.length < 5000) perf.samples.push(dt);
  };
  // Sizes change only when rows are expanded or collapsed or the window
  // is resized; a scroll frame touches neither, so it forces no layout of
  // the scroller beyond reading scrollTop.
  let sizedFor = -1, viewH = 600;
  const size = () => {
    sizedFor = visible.length;
    spacer.style.height = `${visible.length * ROW_H}px`;
    scroller.style.height = visible.length * ROW_H < window.innerHeight * 0.6 ? `${visible.length * ROW_H + 2}px` : '';
    viewH = scroller.clientHeight || 600;
  };
  window.addEventListener('resize', () => { sizedFor = -1; }, {passive: true});
  const drawRows = () => {
    frame = 0;
    if (sizedFor !== visible.length) size();
    const top = scroller.scrollTop, hgt = viewH;
    const first = Math.max(0, Math.floor(top / ROW_H) - OVERSCAN);
    const last = Math.min(visible.length - 1, Math.ceil((top + hgt) / ROW_H) + OVERSCAN);
    const need = Math.max(0, last - first + 1);
    while (pool.length < need) pool.push(mkRow());
    // Keep rows already showing an index in range; refill the others.
    const free = [];
    const shown = new Set();
    for (const r of pool) {
      if (r.idx >= first && r.idx <= last && r.hop === visible[r.idx] && !r.stale) shown.add(r.idx);
      else free.push(r);
    }
    for (let i = first; i <= last; i++) {
      if (shown.has(i)) continue;
      const r = free.pop();
      r.stale = false;
      r.el.hidden = false;
      fill(r, i);
    }
    for (const r of free) { r.el.hidden = true; r.idx = -1; r.hop = null; }
  };
  const redraw = () => { for (const r of pool) r.stale = true; draw(); };
  scroller.addEventListener('scroll', () => { if (!frame) frame = requestAnimationFrame(draw); }, {passive: true});

  const toggleHop = (hp) => {
    if (!hp.children.length) return;
    if (collapsed.has(hp.id)) collapsed.delete(hp.id); else collapsed.add(hp.id);
    const cur = visible[active];
    visible = flatten(roots, collapsed);
    active = Math.max(0, visible.indexOf(cur));
    redraw();
  };
  const select = (idx, show) => {
    active = Math.max(0, Math.min(visible.length - 1, idx));
    const top = active * ROW_H;
    if (top < scroller.scrollTop) scroller.scrollTop = top;
    else if (top + ROW_H > scroller.scrollTop + scroller.clientHeight) scroller.scrollTop = top + ROW_H - scroller.clientHeight;
    redraw();
    scroller.setAttribute('aria-activedescendant', `wf-${active}`);
    if (show) {
      replace(details, hopDetails(trace, visible[active], t0));
      if (onSelect) onSelect(visible[active].id);
    }
  };
  scroller.addEventListener('keydown', (ev) => {
    const hp = visible[active];
    const page = Math.max(1, Math.floor(scroller.clientHeight / ROW_H) - 1);
    switch (ev.key) {
      case 'ArrowDown': select(active + 1, false); break;
      case 'ArrowUp': select(active - 1, false); break;
      case 'PageDown': select(active + page, false); break;
      case 'PageUp': select(active - page, false); break;
      case 'Home': select(0, false); break;
      case 'End': select(visible.length - 1, false); break;
      case 'ArrowRight': if (hp && collapsed.has(hp.id)) toggleHop(hp); else select(active + 1, false); break;
      case 'ArrowLeft': if (hp && hp.children.length && !collapsed.has(hp.id)) toggleHop(hp); else if (hp) { const p = visible.findIndex((x) => x.id === hp.parent); if (p >= 0) select(p, false); } break;
      case 'Enter': case ' ': select(active, true); break;
      default: return;
    }
    ev.preventDefault();
  });
  draw();
  requestAnimationFrame(() => { sizedFor = -1; draw(); }); // once laid out, the real height is known
  if (selected && visible[active] && visible[active].id === selected) select(active, true);
  else replace(details, h('p', {class: 'hint', text: 'Select a row (click, or arrow keys and Enter) to see its tags, logs and both sides of an Envoy hop.'}));
  return {scroller, hops, spans};
}

export async function view(root, params, signal) {
  const stage = h('div', {class: 'waterfall'}, loading('the trace'));
  replace(root, h('h1', null, 'Trace ', h('code', {text: params.id || ''})),
    h('p', {class: 'links'}, h('a', {href: router.href('traces', {}), text: '← Trace search'})), stage);
  if (!params.id) { replace(stage, empty('No trace id given.')); return; }
  try {
    // sharedSpanIDs=keep: both halves of an Envoy shared span keep their one
    // id (the Jaeger default renames the server half), so they form one hop.
    const body = await api.jaeger(`/api/traces/${encodeURIComponent(params.id)}`, {sharedSpanIDs: 'keep'}, signal);
    const trace = (body.data || [])[0];
    if (!trace || !(trace.spans || []).length) { replace(stage, empty(`Trace ${params.id} was not found.`)); return; }
    renderWaterfall(stage, trace, {selected: params.span, onSelect: (id) => router.update({span: id})});
    performance.mark('meshlens:waterfall-rendered');
  } catch (e) {
    if (e.name !== 'AbortError') replace(stage, errorBox(e, `trace ${params.id}`));
  }
}
