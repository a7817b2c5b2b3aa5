// Entry point: routes the hash to a view and keeps the navigation current.
import * as router from './router.js';
import {h, replace, errorBox, hideTip} from './dom.js';
import {token, setToken, tenant, setTenant, tenantHeader, validTenant, tenancyInfo, TENANT_KEY} from './api.js';
import * as topology from './topology.js';
import * as dashboard from './dashboard.js';
import * as traces from './traces.js';
import * as waterfall from './waterfall.js';
import * as recommendations from './recommendations.js';
import * as errors from './errors.js';

const VIEWS = {topology, dashboard, traces, trace: waterfall, recommendations, errors};
const NAV = {trace: 'traces'};
const TITLES = {topology: 'Topology', dashboard: 'Dashboards', traces: 'Traces', trace: 'Trace', recommendations: 'Recommendations', errors: 'Error log'};

let controller = null;
let lastPage = null;

async function render() {
  const {page, params} = router.current();
  const main = document.getElementById('main');
  if (controller) controller.abort();
  controller = new AbortController();
  hideTip();
  for (const a of document.querySelectorAll('nav a[data-page]')) {
    if (a.dataset.page === (NAV[page] || page)) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  document.title = `${TITLES[page] || 'Not found'} · meshlens`;
  const v = VIEWS[page];
  if (!v) {
    replace(main, h('h1', {text: 'Not found'}), h('p', null, 'There is no page ', h('code', {text: page}), '. ', h('a', {href: '#/topology', text: 'Go to the topology'})));
    return;
  }
  try {
    await v.view(main, params, controller.signal);
  } catch (e) {
    if (e.name === 'AbortError' || e.prompted) return; // a token or tenant prompt is up
    console.error(e);
    replace(main, errorBox(e, TITLES[page]));
  }
  if (lastPage !== page) main.focus({preventScroll: true});
  lastPage = page;
}

// tokenPrompt asks for the bearer token the query API requires (it answered
// 401). The token is kept in sessionStorage and sent on every request.
function tokenPrompt(message) {
  const input = h('input', {type: 'password', id: 'token', name: 'token', autocomplete: 'off', required: true, 'aria-describedby': 'token-help'});
  const form = h('form', {class: 'token-form', onsubmit: (ev) => {
    ev.preventDefault();
    setToken(input.value.trim());
    render();
  }},
  h('label', {for: 'token', text: 'Bearer token'}), input,
  h('button', {type: 'submit', text: 'Use token'}));
  // The new token may be bound to other tenants.
  form.addEventListener('submit', () => refreshTenantBar());
  const had = token() !== '';
  return h('section', {class: 'state auth', role: 'alert'},
    h('h1', {text: 'Sign in to meshlens'}),
    h('p', {id: 'token-help', text: had
      ? 'The server refused the token of this tab (' + message + '). Enter another one.'
      : 'This meshlens requires a bearer token to read its APIs. Enter a token with the read permission; it is kept for this tab only.'}),
    form,
    had ? h('button', {type: 'button', class: 'link', text: 'Forget the token', onclick: () => { setToken(''); render(); }}) : null);
}

// Any API answer 401 replaces the page with the prompt; the view's other
// requests are cancelled so that none of them draws over it.
window.addEventListener('meshlens:unauthorized', (ev) => {
  const main = document.getElementById('main');
  if (!main || main.querySelector('.state.auth')) return;
  if (controller) controller.abort();
  hideTip();
  replace(main, tokenPrompt(ev.detail || 'HTTP 401'));
});

// Multi-tenancy: whether the server has it on (it refused a request for
// want of a tenant, or answered /api/meshlens/v1/tenants), for the header
// bar to show the tenant only then.
let tenancyOn = false;

// tenantBar is the header bar's "Tenant: x [Switch]", hidden until the
// server is known to have multi-tenancy on.
function tenantBar() {
  let bar = document.getElementById('tenant-bar');
  if (bar) return bar;
  bar = h('div', {id: 'tenant-bar', class: 'tenant-bar', hidden: true},
    h('span', {class: 'label', text: 'Tenant'}),
    h('strong', {id: 'tenant-current'}),
    h('button', {type: 'button', id: 'tenant-switch', class: 'btn', text: 'Switch tenant',
      onclick: () => showTenantPrompt({message: '', status: 0, switching: true})}));
  document.querySelector('header.top').append(bar);
  return bar;
}

function updateTenantBar() {
  const bar = tenantBar();
  bar.hidden = !tenancyOn;
  document.getElementById('tenant-current').textContent = tenant() || 'none';
}

// refreshTenantBar asks the server whether multi-tenancy is on, without
// raising a prompt (the page's own requests do that).
async function refreshTenantBar() {
  const info = await tenancyInfo().catch(() => null);
  if (info) tenancyOn = true;
  updateTenantBar();
}

// tenantPrompt asks which tenant to read: a list when the token is bound
// to tenants, else a text field. The choice is kept in localStorage and
// sent in the tenant header on every request.
async function tenantPrompt(detail) {
  const info = await tenancyInfo().catch(() => null);
  const current = tenant();
  const choices = info && info.tenants.length ? info.tenants : null;
  const field = choices
    ? h('select', {id: 'tenant', name: 'tenant', required: true, 'aria-describedby': 'tenant-help'},
      choices.map((c) => h('option', {value: c, text: c, selected: c === current})))
    : h('input', {type: 'text', id: 'tenant', name: 'tenant', autocomplete: 'on', required: true, maxlength: 150,
      spellcheck: 'false', value: current || undefined, 'aria-describedby': 'tenant-help'});
  const problem = h('p', {class: 'form-error', role: 'status'});
  const form = h('form', {class: 'token-form tenant-form', onsubmit: (ev) => {
    ev.preventDefault();
    const id = field.value.trim();
    if (!validTenant(id)) {
      problem.textContent = 'A tenant id is 1–150 letters, digits or !-_.*\'() (not . or ..).';
      return;
    }
    setTenant(id);
    updateTenantBar();
    render();
  }},
  h('label', {for: 'tenant', text: 'Tenant'}), field,
  h('button', {type: 'submit', text: 'Use tenant'}), problem);
  const header = (info && info.header) || tenantHeader();
  let text;
  if (detail.switching) text = `Choose the tenant whose data to show (sent in the ${header} header).`;
  else if (current && detail.status !== 401) text = `The server refused tenant "${current}" (${detail.message}). Choose another.`;
  else text = `This meshlens has multi-tenancy on: every query names a tenant, sent in the ${header} header. ` +
    'Choose one; it is remembered in this browser.';
  return h('section', {class: 'state auth tenant', role: 'alert'},
    h('h1', {text: 'Choose a tenant'}),
    h('p', {id: 'tenant-help', text}),
    form,
    choices ? h('p', {class: 'hint', text: 'Your token may read these tenants only.'}) : null);
}

// showTenantPrompt replaces the page with the tenant prompt, cancelling
// the view's other requests so that none of them draws over it.
async function showTenantPrompt(detail) {
  const main = document.getElementById('main');
  if (!main || main.querySelector('.state.auth')) return;
  if (controller) controller.abort();
  hideTip();
  tenancyOn = true;
  updateTenantBar();
  // A placeholder keeps a second refusal from opening a second prompt
  // while the first one asks for the tenant list.
  replace(main, h('section', {class: 'state auth tenant', role: 'status', text: 'Asking for the tenants…'}));
  const prompt = await tenantPrompt(detail);
  replace(main, prompt);
  main.querySelector('#tenant').focus();
}

window.addEventListener('meshlens:tenant', (ev) => {
  const detail = ev.detail || {message: 'HTTP 401', status: 401};
  if (detail.retry) {
    if (controller) controller.abort();
    render();
    return;
  }
  showTenantPrompt(detail);
});

// Another tab chose another tenant: follow it, so this tab never shows
// one tenant's page under another's name.
window.addEventListener('storage', (ev) => {
  if (ev.key !== TENANT_KEY) return;
  updateTenantBar();
  render();
});

window.addEventListener('hashchange', render);
window.addEventListener('error', (ev) => {
  const main = document.getElementById('main');
  if (main) main.prepend(errorBox(ev.error || ev.message, 'the page (script error)'));
});
if (!window.location.hash) history.replaceState(null, '', '#/topology');
updateTenantBar();
refreshTenantBar();
render();
