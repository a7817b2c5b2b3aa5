// Hash routing: #/page?key=value. The whole state of a view lives in the
// URL, so every view can be bookmarked, shared and reloaded.

export function current() {
  const raw = window.location.hash.replace(/^#\/?/, '');
  const i = raw.indexOf('?');
  const page = decodeURIComponent(i < 0 ? raw : raw.slice(0, i)) || 'topology';
  const params = Object.fromEntries(new URLSearchParams(i < 0 ? '' : raw.slice(i + 1)));
  return {page, params};
}

export function href(page, params = {}) {
  const sp = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') sp.set(k, v);
  }
  const qs = sp.toString();
  return `#/${page}${qs ? '?' + qs : ''}`;
}

// go navigates to a new view (a history entry, re-renders).
export function go(page, params) {
  window.location.hash = href(page, params).slice(1);
}

// update changes parameters of the current view without re-rendering it
// (the view already shows the new state); the URL stays the source of truth.
export function update(partial, {push = false} = {}) {
  const {page, params} = current();
  const next = {...params, ...partial};
  for (const [k, v] of Object.entries(partial)) if (v === undefined || v === null || v === '') delete next[k];
  const url = window.location.pathname + window.location.search + href(page, next);
  if (push) history.pushState(null, '', url);
  else history.replaceState(null, '', url);
}
