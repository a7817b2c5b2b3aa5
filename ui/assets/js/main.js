// Entry point: routes the hash to a view and keeps the navigation current.
import * as router from './router.js';
import {h, replace, errorBox, hideTip} from './dom.js';
import {token, setToken} from './api.js';
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
    if (e.name === 'AbortError' || e.status === 401) return; // 401: the prompt is up
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

window.addEventListener('hashchange', render);
window.addEventListener('error', (ev) => {
  const main = document.getElementById('main');
  if (main) main.prepend(errorBox(ev.error || ev.message, 'the page (script error)'));
});
if (!window.location.hash) history.replaceState(null, '', '#/topology');
render();
