// Clients of meshlens's public HTTP APIs. Every failure becomes an
// APIError carrying the status and the server's own message, for the page
// to show.

export class APIError extends Error {
  constructor(message, status, url) {
    super(message);
    this.status = status;
    this.url = url;
  }
}

function buildURL(path, params) {
  const u = new URL(path, window.location.origin);
  if (params) {
    for (const [k, v] of Object.entries(params)) {
      if (v === undefined || v === null || v === '') continue;
      if (Array.isArray(v)) v.forEach((x) => u.searchParams.append(k, x));
      else u.searchParams.set(k, v);
    }
  }
  return u.pathname + u.search;
}

// The bearer token for a query API that requires one (auth in the server
// configuration). It lives in sessionStorage: per tab, gone when the tab
// closes, never in a cookie the browser would send on its own.
const TOKEN_KEY = 'meshlens.token';
export function token() {
  try { return sessionStorage.getItem(TOKEN_KEY) || ''; } catch { return ''; }
}
export function setToken(t) {
  try {
    if (t) sessionStorage.setItem(TOKEN_KEY, t); else sessionStorage.removeItem(TOKEN_KEY);
  } catch { /* storage disabled: the token lasts for this page only */ }
}

async function request(path, params, signal) {
  const url = buildURL(path, params);
  const headers = {Accept: 'application/json'};
  const t = token();
  if (t) headers.Authorization = `Bearer ${t}`;
  let resp;
  try {
    resp = await fetch(url, {signal, headers});
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new APIError(`network error: ${e.message}`, 0, url);
  }
  return {url, resp};
}

function messageOf(body, text) {
  if (body && typeof body === 'object') {
    if (typeof body.error === 'string') return body.error;
    if (Array.isArray(body.errors) && body.errors.length && body.errors[0]) return body.errors[0].msg || JSON.stringify(body.errors[0]);
    if (typeof body.message === 'string') return body.message;
  }
  return text.slice(0, 300);
}

// unauthorized tells the page that the API wants a (different) token:
// views catch their own errors, so the prompt is raised from here.
function unauthorized(message) {
  window.dispatchEvent(new CustomEvent('meshlens:unauthorized', {detail: message}));
}

export async function getJSON(path, params, signal) {
  const {url, resp} = await request(path, params, signal);
  const text = await resp.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
  if (resp.status === 401) unauthorized(messageOf(body, text));
  if (!resp.ok) {
    throw new APIError(`HTTP ${resp.status}${messageOf(body, text) ? ': ' + messageOf(body, text) : ''}`, resp.status, url);
  }
  if (body === null) throw new APIError('the answer is not JSON', resp.status, url);
  return body;
}

export async function getText(path, params, signal) {
  const {url, resp} = await request(path, params, signal);
  const text = await resp.text();
  if (resp.status === 401) unauthorized(text.slice(0, 300));
  if (!resp.ok) {
    let body = null;
    try { body = JSON.parse(text); } catch { /* plain */ }
    throw new APIError(`HTTP ${resp.status}: ${messageOf(body, text)}`, resp.status, url);
  }
  return text;
}

// Prometheus HTTP API.
async function prom(path, params, signal) {
  const body = await getJSON(path, params, signal);
  if (body.status !== 'success') throw new APIError(body.error || 'query failed', 200, path);
  return body.data;
}
export async function promQuery(query, time, signal) {
  const d = await prom('/api/v1/query', {query, time}, signal);
  return d.result;
}
export async function promRange(query, start, end, step, signal) {
  const d = await prom('/api/v1/query_range', {query, start, end, step}, signal);
  return d.result;
}
export async function promLabelValues(name, match, start, end, signal) {
  return prom(`/api/v1/label/${encodeURIComponent(name)}/values`, {'match[]': match, start, end}, signal);
}

// Escapes a PromQL label value for a double-quoted string.
export function q(v) {
  return '"' + String(v).replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n') + '"';
}
export function sel(labels) {
  return '{' + Object.entries(labels).filter(([, v]) => v !== undefined && v !== null && v !== '')
    .map(([k, v]) => `${k}=${q(v)}`).join(',') + '}';
}

// Topology API.
export function topology(params, signal) {
  return getJSON('/api/meshlens/v1/topology', params, signal);
}

// Jaeger query API.
export async function jaeger(path, params, signal) {
  const body = await getJSON(path, params, signal);
  if (Array.isArray(body.errors) && body.errors.length && !body.data) {
    throw new APIError(body.errors.map((e) => e.msg).join('; '), 200, path);
  }
  return body;
}

// Recommendations and errors APIs.
export function recommendations(params, signal) {
  return getJSON('/api/meshlens/v1/recommendations', params, signal);
}
export function recommendationsYAML(params, signal) {
  return getText('/api/meshlens/v1/recommendations/istio.yaml', params, signal);
}
export function errorRecords(params, signal) {
  return getJSON('/api/meshlens/v1/errors', params, signal);
}
