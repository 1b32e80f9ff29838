// Human units. A figure the agent could not give is shown as
// "unavailable: <reason>", never as 0 (see `avail`).

const SI = ['', 'k', 'M', 'G', 'T', 'P'];
const IEC = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

/** Whether `v` is the API's `{"unavailable": "<why>"}`. */
export function isUnavailable(v) {
  return v !== null && typeof v === 'object' && typeof v.unavailable === 'string';
}

/** `v` formatted by `fmt`, or "unavailable: why" (null/undefined: "—"). */
export function avail(v, fmt = String) {
  if (isUnavailable(v)) return `unavailable: ${v.unavailable}`;
  if (v === null || v === undefined) return '—';
  return fmt(v);
}

function scaled(n, base, units, digits) {
  if (!Number.isFinite(n)) return '—';
  let i = 0;
  let v = Math.abs(n);
  while (v >= base && i < units.length - 1) {
    v /= base;
    i += 1;
  }
  const shown = i === 0 || v >= 100 ? v.toFixed(0) : v.toFixed(digits);
  return `${n < 0 ? '-' : ''}${shown}`.concat(' ', units[i]);
}

/** Bits per second: "12.3 Mbit/s". */
export function bitRate(bps) {
  return scaled(bps, 1000, SI.map((p) => `${p}bit/s`), 1);
}

/** Bytes, binary units: "1.2 MiB". */
export function bytes(n) {
  return scaled(n, 1024, IEC, 1);
}

/** A count with thousands separators. */
export function count(n) {
  return Number.isFinite(n) ? Math.round(n).toLocaleString('en') : '—';
}

/** A percentage from 0..100. */
export function percent(p, digits = 1) {
  return Number.isFinite(p) ? `${p.toFixed(digits)} %` : '—';
}

/** Seconds as "1 d 4 h", "3 min 2 s", "12 ms". */
export function duration(s) {
  if (!Number.isFinite(s)) return '—';
  if (s < 1) return `${(s * 1000).toFixed(s < 0.01 ? 2 : 1)} ms`;
  const parts = [
    [86400, 'd'],
    [3600, 'h'],
    [60, 'min'],
    [1, 's'],
  ];
  const out = [];
  let left = Math.floor(s);
  for (const [size, unit] of parts) {
    if (left >= size || (unit === 's' && out.length === 0)) {
      out.push(`${Math.floor(left / size)} ${unit}`);
      left %= size;
    }
    if (out.length === 2) break;
  }
  return out.join(' ');
}

/** An RFC 3339 time as "3 min ago" (or "in 2 s" for a clock ahead). */
export function ago(iso, now = Date.now()) {
  if (!iso) return '—';
  const t = Date.parse(iso);
  if (!Number.isFinite(t)) return '—';
  const s = (now - t) / 1000;
  if (s < -1) return `in ${duration(-s)}`;
  if (s < 2) return 'just now';
  return `${duration(s).split(' ').slice(0, 2).join(' ')} ago`;
}

/** An RFC 3339 time in the browser's locale. */
export function localTime(iso) {
  if (!iso) return '—';
  const t = new Date(iso);
  return Number.isNaN(t.getTime()) ? '—' : t.toLocaleString();
}

/** Degrees Celsius. */
export function celsius(c) {
  return Number.isFinite(c) ? `${c.toFixed(1)} °C` : '—';
}
