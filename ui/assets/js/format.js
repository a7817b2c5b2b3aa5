// Number, duration and time formatting with explicit units.

export function num(v, digits = 3) {
  if (v === null || v === undefined || Number.isNaN(v)) return '—';
  if (!Number.isFinite(v)) return v > 0 ? '∞' : '-∞';
  const a = Math.abs(v);
  if (a === 0) return '0';
  if (a >= 1e9) return (v / 1e9).toPrecision(digits) + 'G';
  if (a >= 1e6) return (v / 1e6).toPrecision(digits) + 'M';
  if (a >= 1e4) return (v / 1e3).toPrecision(digits) + 'k';
  if (a >= 100) return v.toFixed(0);
  return Number(v.toPrecision(digits)).toString();
}

export function rate(v) { return `${num(v)} req/s`; }
export function pct(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return '—';
  const p = v * 100;
  return `${p === 0 ? '0' : p < 0.01 ? '<0.01' : num(p)}%`;
}
export function ms(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return '—';
  if (v >= 60000) return `${num(v / 60000)} min`;
  if (v >= 1000) return `${num(v / 1000)} s`;
  if (v < 1 && v > 0) return `${num(v * 1000)} µs`;
  return `${num(v)} ms`;
}
export function us(v) { return ms(v / 1000); }
export function bytes(v) { return `${num(v)}B`; }

export function time(t) {
  const d = t instanceof Date ? t : new Date(t);
  return d.toLocaleTimeString(undefined, {hour12: false});
}
export function dateTime(t) {
  const d = t instanceof Date ? t : new Date(t);
  return `${d.toLocaleDateString(undefined, {month: 'short', day: 'numeric'})} ${time(d)}`;
}

// Durations like 5m, 1h30m, 250ms, 1.5s -> seconds.
export function parseDuration(s) {
  if (!s) return null;
  const re = /(\d+(?:\.\d+)?)(ms|us|µs|s|m|h|d)/g;
  let total = 0, m, seen = '';
  while ((m = re.exec(s)) !== null) {
    const n = parseFloat(m[1]);
    total += n * {us: 1e-6, 'µs': 1e-6, ms: 1e-3, s: 1, m: 60, h: 3600, d: 86400}[m[2]];
    seen += m[0];
  }
  return seen === s.trim() ? total : null;
}

export function shortDuration(sec) {
  if (sec % 86400 === 0) return `${sec / 86400}d`;
  if (sec % 3600 === 0) return `${sec / 3600}h`;
  if (sec % 60 === 0) return `${sec / 60}m`;
  return `${sec}s`;
}
