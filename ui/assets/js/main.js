// Entry point: routes the hash to a view and keeps the navigation current.
import * as router from './router.js';
import {h, replace, errorBox, hideTip} from './dom.js';
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
    if (e.name !== 'AbortError') { console.error(e); replace(main, errorBox(e, TITLES[page])); }
  }
  if (lastPage !== page) main.focus({preventScroll: true});
  lastPage = page;
}

window.addEventListener('hashchange', render);
window.addEventListener('error', (ev) => {
  const main = document.getElementById('main');
  if (main) main.prepend(errorBox(ev.error || ev.message, 'the page (script error)'));
});
if (!window.location.hash) history.replaceState(null, '', '#/topology');
render();
