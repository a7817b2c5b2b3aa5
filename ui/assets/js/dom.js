// DOM helpers. Every piece of data reaches the page through textContent or
// setAttribute, never through HTML parsing, so a service name or span tag
// holding markup is shown as text.

const SVGNS = 'http://www.w3.org/2000/svg';

function build(el, attrs, children) {
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') el.setAttribute('class', v);
      else if (k === 'text') el.textContent = String(v);
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else if (k === 'style') throw new Error('style attributes are forbidden by the CSP; use classes or el.style');
      else el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// h creates an HTML element: h('a', {href: '#/x', class: 'link'}, 'text', child).
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

// s creates an SVG element.
export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVGNS, tag), attrs, children);
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

// Loading, empty and error states. Errors are role=alert so screen
// readers announce them; nothing is swallowed.
export function loading(what) {
  return h('p', {class: 'state loading', role: 'status'}, `Loading ${what}…`);
}
export function empty(msg) {
  return h('p', {class: 'state empty', role: 'status'}, msg);
}
export function errorBox(err, what) {
  const box = h('div', {class: 'state error', role: 'alert'},
    h('strong', {text: `Could not load ${what}: `}),
    h('span', {class: 'msg', text: err && err.message ? err.message : String(err)}));
  if (err && err.url) box.append(h('div', {class: 'url'}, h('code', {text: err.url})));
  return box;
}

export function replace(el, ...children) {
  clear(el);
  el.append(...children.flat().filter(Boolean));
  return el;
}

// Shared tooltip: positioned through the CSSOM (allowed by the CSP).
export function showTip(x, y, lines) {
  const tip = document.getElementById('tooltip');
  clear(tip);
  for (const l of lines) tip.append(h('div', {text: l}));
  tip.hidden = false;
  const w = tip.offsetWidth, hh = tip.offsetHeight;
  const left = Math.min(x + 14, window.innerWidth - w - 8);
  const top = Math.min(y + 14, window.innerHeight - hh - 8);
  tip.style.left = `${Math.max(4, left)}px`;
  tip.style.top = `${Math.max(4, top)}px`;
}
export function hideTip() {
  const tip = document.getElementById('tooltip');
  if (tip) tip.hidden = true;
}

// A labelled form control: label + control, wired with for/id.
let uid = 0;
export function field(label, control, hint) {
  const id = control.id || `f${++uid}`;
  control.id = id;
  const wrap = h('div', {class: 'field'}, h('label', {for: id, text: label}), control);
  if (hint) {
    const hid = `${id}-hint`;
    control.setAttribute('aria-describedby', hid);
    wrap.append(h('small', {id: hid, class: 'hint', text: hint}));
  }
  return wrap;
}

export function select(name, options, value, attrs = {}) {
  const el = h('select', {name, ...attrs});
  for (const o of options) {
    const [v, label] = Array.isArray(o) ? o : [o, o];
    const opt = h('option', {value: v, text: label});
    if (String(v) === String(value ?? '')) opt.selected = true;
    el.append(opt);
  }
  return el;
}

export function table(columns, rows, opts = {}) {
  const t = h('table', {class: 'data' + (opts.class ? ' ' + opts.class : '')});
  if (opts.caption) t.append(h('caption', {text: opts.caption}));
  t.append(h('thead', null, h('tr', null, columns.map((c) => h('th', {scope: 'col', class: c.num ? 'num' : null, text: c.label})))));
  const tb = h('tbody');
  for (const r of rows) {
    tb.append(h('tr', null, columns.map((c) => {
      const v = c.render ? c.render(r) : r[c.key];
      return h('td', {class: c.num ? 'num' : null}, v instanceof Node ? v : (v ?? '—'));
    })));
  }
  t.append(tb);
  return t;
}
