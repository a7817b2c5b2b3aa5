// Recommendations: per service and edge, the setting in force, the
// recommended value, why, and the evidence; chain inconsistencies link to
// the graph; the Istio YAML can be copied.
import {h, s, replace, loading, empty, errorBox, field, select} from './dom.js';
import * as api from './api.js';
import * as router from './router.js';
import {num, ms, pct, dateTime} from './format.js';

const KINDS = [['', 'All kinds'], ['timeout', 'Timeouts'], ['retry', 'Retries'], ['ratelimit', 'Rate limits'], ['chain', 'Call chains'], ['misconfig', 'Misconfigurations']];

// setting formats a Setting's fields with units.
export function setting(st) {
  if (!st) return 'not set';
  if (st.disabled) return `disabled${st.source ? ` (${st.source})` : ''}`;
  const parts = [];
  if (st.timeout_ms) parts.push(`timeout ${ms(st.timeout_ms)}`);
  if (st.deadline_ms) parts.push(`deadline ${ms(st.deadline_ms)}`);
  if (st.retries) parts.push(`${st.retries} retr${st.retries === 1 ? 'y' : 'ies'}`);
  if (st.per_try_timeout_ms) parts.push(`per try ${ms(st.per_try_timeout_ms)}`);
  if (st.backoff_ms) parts.push(`backoff ${ms(st.backoff_ms)}`);
  if (st.retry_on) parts.push(`on ${st.retry_on}`);
  if (st.retry_budget_percent) parts.push(`budget ${num(st.retry_budget_percent)}%`);
  if (st.min_retry_concurrency) parts.push(`min concurrency ${st.min_retry_concurrency}`);
  if (st.hedge_after_ms) parts.push(`hedge after ${ms(st.hedge_after_ms)}`);
  if (st.rate_per_second) parts.push(`${num(st.rate_per_second)} req/s`);
  if (st.burst) parts.push(`burst ${st.burst}`);
  const txt = parts.join(', ') || 'not set';
  return st.source ? `${txt} (from ${st.source})` : txt;
}

// histogram draws latency buckets with the chosen percentile marked.
export function histogram(ev) {
  const buckets = (ev.histogram || []).filter((b) => b.upper_ms > 0 || b.count > 0);
  const fig = h('figure', {class: 'chart histogram', dataset: {points: String(buckets.length)}});
  fig.append(h('figcaption', {text: `Latency histogram (ms, log scale)${ev.percentile ? `, p${ev.percentile} marked` : ''}`}));
  if (!buckets.length) { fig.append(h('p', {class: 'state empty', text: 'No histogram in the evidence.'})); return fig; }
  const W = 560, H = 170, M = {l: 48, r: 10, t: 18, b: 30};
  const lo = Math.max(0.1, Math.min(...buckets.map((b) => b.lower_ms || b.upper_ms / 2)));
  const hi = Math.max(...buckets.map((b) => (Number.isFinite(b.upper_ms) ? b.upper_ms : b.lower_ms * 2)), ev.marker_ms || 0) * 1.05;
  const X = (v) => M.l + (Math.log10(Math.max(v, lo)) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo)) * (W - M.l - M.r);
  const maxC = Math.max(...buckets.map((b) => b.count)) || 1;
  const Y = (c) => H - M.b - c / maxC * (H - M.t - M.b);
  const svg = s('svg', {viewBox: `0 0 ${W} ${H}`, class: 'chart-svg', role: 'img',
    'aria-label': `Latency histogram of ${buckets.length} buckets; ${ev.percentile ? `p${ev.percentile}` : 'marker'} at ${ms(ev.marker_ms)}`});
  const g = s('g', {class: 'grid'});
  for (let d = Math.pow(10, Math.ceil(Math.log10(lo))); d <= hi; d *= 10) {
    g.append(s('line', {x1: X(d), x2: X(d), y1: M.t, y2: H - M.b}), s('text', {x: X(d), y: H - 12, 'text-anchor': 'middle', class: 'tick', text: ms(d)}));
  }
  g.append(s('text', {x: M.l - 6, y: Y(maxC) + 4, 'text-anchor': 'end', class: 'tick', text: num(maxC)}),
    s('text', {x: M.l - 6, y: Y(0) + 4, 'text-anchor': 'end', class: 'tick', text: '0'}));
  svg.append(g);
  for (const b of buckets) {
    const x0 = X(b.lower_ms || lo), x1 = X(Number.isFinite(b.upper_ms) && b.upper_ms ? b.upper_ms : hi);
    const r = s('rect', {class: 'bar', x: x0 + 0.5, y: Y(b.count), width: Math.max(1, x1 - x0 - 1), height: Math.max(0, Y(0) - Y(b.count))},
      s('title', {text: `${ms(b.lower_ms)}–${ms(b.upper_ms)}: ${b.count} calls`}));
    svg.append(r);
  }
  if (ev.marker_ms) {
    const x = X(ev.marker_ms);
    svg.append(s('line', {class: 'marker', x1: x, x2: x, y1: M.t - 6, y2: H - M.b}),
      s('text', {class: 'marker-label', x: x > W - 140 ? x - 4 : x + 4, 'text-anchor': x > W - 140 ? 'end' : 'start', y: M.t - 4, text: `${ev.percentile ? `p${ev.percentile}` : 'marker'} = ${ms(ev.marker_ms)}`}));
  }
  fig.append(svg);
  return fig;
}

function evidence(ev) {
  if (!ev) return null;
  const facts = [];
  if (ev.samples) facts.push(`${num(ev.samples)} samples`);
  if (ev.window_seconds) facts.push(`over ${num(ev.window_seconds / 60)} min`);
  if (ev.p50_ms) facts.push(`p50 ${ms(ev.p50_ms)}`);
  if (ev.p99_ms) facts.push(`p99 ${ms(ev.p99_ms)}`);
  if (ev.error_rate) facts.push(`errors ${pct(ev.error_rate)}`);
  if (ev.idempotent_share) facts.push(`idempotent ${pct(ev.idempotent_share)}`);
  if (ev.rate_per_second) facts.push(`rate ${num(ev.rate_per_second)} req/s`);
  if (ev.peak_per_second) facts.push(`peak ${num(ev.peak_per_second)} req/s`);
  if (ev.knee_per_second) facts.push(`knee ${num(ev.knee_per_second)} req/s`);
  const failures = ev.failures ? Object.entries(ev.failures).map(([k, v]) => `${k}: ${v}`).join(', ') : '';
  return h('div', {class: 'evidence'}, h('h4', {text: 'Evidence'}), h('p', {text: facts.join(' · ')}),
    failures ? h('p', {text: `Failures: ${failures}`}) : null,
    ev.histogram && ev.histogram.length ? histogram(ev) : null);
}

function card(r) {
  const target = r.edge ? `${r.edge.source} → ${r.edge.destination}${r.edge.endpoint ? ` (${r.edge.endpoint})` : ''}` : r.service;
  const sev = r.severity || '';
  const inc = (r.inconsistencies || []).map((i) => h('li', {class: 'inconsistency'},
    h('strong', {text: `⚠ ${i.kind.replace(/_/g, ' ')}: `}), h('span', {text: (i.path || []).join(' → ')}), h('br'),
    h('span', {text: `${i.detail}${i.have || i.need ? ` (have ${num(i.have)}, need ${num(i.need)})` : ''}`}), ' ',
    i.path && i.path.length ? h('a', {href: router.href('topology', {hl: i.path.join(','), incons: '1'}), text: 'Show on the graph'}) : null));
  return h('article', {class: `rec ${sev}`, id: `rec-${r.id}`, 'aria-labelledby': `rec-${r.id}-h`, dataset: {kind: r.kind, id: r.id}},
    h('h2', {id: `rec-${r.id}-h`}, h('span', {class: `kind k-${r.kind}`, text: r.kind}), ' ', h('span', {text: target}),
      sev ? h('span', {class: `sev sev-${sev}`, text: ` ${sev}`}) : null),
    h('dl', {class: 'facts'},
      h('dt', {text: 'Current'}), h('dd', {text: setting(r.current)}),
      h('dt', {text: 'Recommended'}), h('dd', {class: 'recommended', text: setting(r.recommended)}),
      r.confidence ? h('dt', {text: 'Confidence'}) : null,
      r.confidence ? h('dd', {text: `${num(r.confidence.lower)}–${num(r.confidence.upper)} ${r.confidence.unit || ''} at ${pct(r.confidence.level)}`}) : null),
    h('p', {class: 'explanation', text: r.explanation || ''}),
    r.edge ? h('p', {class: 'links'}, h('a', {href: router.href('topology', {hl: `${r.edge.source},${r.edge.destination}`}), text: 'Show this edge on the graph'}), ' · ',
      h('a', {href: router.href('dashboard', {service: r.edge.destination.split('.')[0]}), text: `Dashboard of ${r.edge.destination}`})) : null,
    inc.length ? h('div', null, h('h4', {text: 'Inconsistencies along the call chain'}), h('ul', null, inc)) : null,
    evidence(r.evidence),
    h('p', {class: 'updated', text: r.updated_at ? `Updated ${dateTime(r.updated_at)}` : ''}));
}

async function copy(text, status) {
  try {
    await navigator.clipboard.writeText(text);
    status.textContent = 'Copied.';
  } catch {
    status.textContent = 'The browser refused clipboard access: select the text and copy it by hand.';
  }
}

export async function view(root, params, signal) {
  const svc = h('input', {type: 'text', name: 'service', value: params.service || '', placeholder: 'reviews or reviews.default'});
  const kind = select('kind', KINDS, params.kind || '');
  const form = h('form', {class: 'toolbar', role: 'search', 'aria-label': 'Filter recommendations'},
    field('Service', svc), field('Kind', kind), h('button', {type: 'submit', class: 'btn primary'}, 'Filter'));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const target = router.href('recommendations', {service: svc.value.trim(), kind: kind.value});
    if (target === window.location.hash) window.dispatchEvent(new HashChangeEvent('hashchange')); else window.location.hash = target.slice(1);
  });
  const list = h('section', {class: 'recs', 'aria-label': 'Recommendations'}, loading('recommendations'));
  const yamlBox = h('section', {class: 'yaml', 'aria-label': 'Istio YAML'});
  replace(root, h('h1', {text: 'Recommendations'}), form,
    h('p', {class: 'links'}, h('a', {href: router.href('topology', {incons: '1'}), text: 'Show inconsistencies on the graph'})), list, yamlBox);
  const f = {service: params.service, kind: params.kind};
  try {
    const body = await api.recommendations(f, signal);
    const recs = body.recommendations || [];
    replace(list, h('p', {class: 'summary', role: 'status', dataset: {count: String(recs.length)},
      text: `${recs.length} recommendation${recs.length === 1 ? '' : 's'}${body.generated_at && !body.generated_at.startsWith('0001') ? `, computed ${dateTime(body.generated_at)}` : ''}`}));
    if (!recs.length) list.append(empty('No recommendations yet: meshlens needs some minutes of traffic per edge before it recommends a setting.'));
    for (const r of recs) list.append(card(r));
  } catch (e) {
    if (e.name !== 'AbortError') replace(list, errorBox(e, 'recommendations'));
  }
  yamlBox.append(h('h2', {text: 'Istio YAML'}), loading('the Istio YAML'));
  try {
    const text = await api.recommendationsYAML(f, signal);
    const pre = h('pre', {class: 'code', tabindex: '0', 'aria-label': 'Istio YAML'}, h('code', {text: text || '# nothing to apply'}));
    const status = h('span', {class: 'copy-status', role: 'status'});
    replace(yamlBox, h('h2', {text: 'Istio YAML'}),
      h('p', null, h('button', {type: 'button', class: 'btn', onclick: () => copy(text, status)}, 'Copy YAML'), ' ', status), pre);
  } catch (e) {
    if (e.name !== 'AbortError') replace(yamlBox, h('h2', {text: 'Istio YAML'}), errorBox(e, 'the Istio YAML'));
  }
}
