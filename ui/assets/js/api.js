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

// The tenant the queries name when the server has multi-tenancy on, and
// the header it goes in (the server's multi_tenancy.header, learnt from its
// answers). Unlike the token it is no secret, so it lives in localStorage
// and survives the tab; main.js follows changes made in other tabs.
export const TENANT_KEY = 'meshlens.tenant';
const TENANT_HEADER_KEY = 'meshlens.tenantHeader';
const DEFAULT_TENANT_HEADER = 'X-Scope-OrgID';
export function tenant() {
  try { return localStorage.getItem(TENANT_KEY) || ''; } catch { return ''; }
}
export function setTenant(id) {
  try {
    if (id) localStorage.setItem(TENANT_KEY, id); else localStorage.removeItem(TENANT_KEY);
  } catch { /* storage disabled: nothing is remembered */ }
}
export function tenantHeader() {
  try { return localStorage.getItem(TENANT_HEADER_KEY) || DEFAULT_TENANT_HEADER; } catch { return DEFAULT_TENANT_HEADER; }
}
function setTenantHeader(name) {
  // A header name the browser would refuse makes every fetch throw; keep
  // the default rather than break the page.
  if (typeof name !== 'string' || !/^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$/.test(name)) return;
  try { localStorage.setItem(TENANT_HEADER_KEY, name); } catch { /* as above */ }
}

// The same tenant id rule as the server's (tenancy.ValidateID).
export function validTenant(id) {
  return /^[A-Za-z0-9!\-_.*'()]{1,150}$/.test(id) && id !== '.' && id !== '..';
}

// Every API request goes through here, so every one carries the token and
// the tenant.
async function request(path, params, signal) {
  const url = buildURL(path, params);
  const headers = {Accept: 'application/json'};
  const t = token();
  if (t) headers.Authorization = `Bearer ${t}`;
  const sent = {tenant: tenant(), header: tenantHeader()};
  if (sent.tenant) headers[sent.header] = sent.tenant;
  let resp;
  try {
    resp = await fetch(url, {signal, headers});
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new APIError(`network error: ${e.message}`, 0, url);
  }
  return {url, resp, sent};
}

function messageOf(body, text) {
  if (body && typeof body === 'object') {
    if (typeof body.error === 'string') return body.error;
    if (Array.isArray(body.errors) && body.errors.length && body.errors[0]) return body.errors[0].msg || JSON.stringify(body.errors[0]);
    if (typeof body.message === 'string') return body.message;
  }
  return text.slice(0, 300);
}

// refused tells the page that the API wants a (different) token or
// tenant: views catch their own errors, so the prompts are raised from
// here. The server marks its refusals about the tenant (401 none, 400
// invalid, 403 not allowed) with tenantHeader in the JSON body; any other
// 401 is about the credential. Returns whether a prompt was asked for.
function refused(status, body, text, sent) {
  if (body && typeof body === 'object' && typeof body.tenantHeader === 'string' && [400, 401, 403].includes(status)) {
    // A tenant sent in a header the server does not read (its
    // multi_tenancy.header is another): send it in the right one.
    const retry = status === 401 && sent.tenant !== '' && sent.header !== body.tenantHeader;
    setTenantHeader(body.tenantHeader);
    window.dispatchEvent(new CustomEvent('meshlens:tenant', {detail: {message: messageOf(body, text), status, retry}}));
    return true;
  }
  if (status === 401) {
    window.dispatchEvent(new CustomEvent('meshlens:unauthorized', {detail: messageOf(body, text)}));
    return true;
  }
  return false;
}

function parseJSON(text) {
  try { return text ? JSON.parse(text) : null; } catch { return null; }
}

function failure({resp, url, sent}, body, text) {
  const msg = messageOf(body, text);
  const err = new APIError(`HTTP ${resp.status}${msg ? ': ' + msg : ''}`, resp.status, url);
  // A prompt replaced the page: the view must not draw its error over it.
  err.prompted = refused(resp.status, body, text, sent);
  return err;
}

export async function getJSON(path, params, signal) {
  const r = await request(path, params, signal);
  const text = await r.resp.text();
  const body = parseJSON(text);
  if (!r.resp.ok) throw failure(r, body, text);
  if (body === null) throw new APIError('the answer is not JSON', r.resp.status, r.url);
  return body;
}

export async function getText(path, params, signal) {
  const r = await request(path, params, signal);
  const text = await r.resp.text();
  if (!r.resp.ok) throw failure(r, parseJSON(text), text);
  return text;
}

// tenancyInfo asks the server whether it has multi-tenancy on and which
// tenants the token may name: {header, tenants} (tenants empty: any), or
// null when multi-tenancy is off (404) or the question fails. It raises no
// prompt: the page's own requests do.
export async function tenancyInfo(signal) {
  let r;
  try {
    r = await request('/api/meshlens/v1/tenants', null, signal);
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    return null;
  }
  if (!r.resp.ok) return null;
  const body = parseJSON(await r.resp.text());
  if (!body || typeof body.header !== 'string') return null;
  setTenantHeader(body.header);
  return {header: body.header, tenants: Array.isArray(body.tenants) ? body.tenants.filter((x) => typeof x === 'string') : []};
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
