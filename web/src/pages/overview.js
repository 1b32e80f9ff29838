// The overview: the alerts firing, live rates per interface (from the
// stream), the busiest devices now, the host's figures, gateway latency,
// devices by status, and map/cache/history health when something degrades.

import { html } from 'htm/preact';
import { useEffect, useMemo, useRef } from 'preact/hooks';
import { Chart } from '../chart.js';
import { usePoll } from '../hooks.js';
import { useObservable } from '../store.js';
import { latest, rates, WINDOW_SECONDS } from '../stream.js';
import { avail, bitRate, bytes, celsius, duration, isUnavailable, percent } from '../format.js';
import { Card, Loaded, Meter, Problem, Stat, deviceHref, deviceName } from '../ui.js';
import { entity } from './alerts.js';

const RATE_SERIES = [
  { label: 'rx', color: '--rx' },
  { label: 'tx', color: '--tx' },
];

export function Overview() {
  const devices = usePoll('/api/v1/devices', 5000);
  const system = usePoll('/api/v1/system', 5000);
  const ready = useRef(false);
  useEffect(() => {
    // First render with data: what the browser test times.
    if (!ready.current && devices.data && (system.data || system.error)) {
      ready.current = true;
      performance.mark('netmon-overview-ready');
      document.getElementById('main')?.setAttribute('data-ready', 'overview');
    }
  });
  return html`<h1>Overview</h1>
    <div class="grid">
      <${ActiveAlerts} />
      <${LiveRates} />
      <${Busiest} devices=${devices} />
      <${Host} system=${system} />
      <${Gateways} />
      <${Counts} devices=${devices} />
      <${Health} />
    </div>`;
}

/** The alerts firing and pending now, the worst first. */
function ActiveAlerts() {
  const poll = usePoll('/api/v1/alerts', 5000);
  const rank = { critical: 0, warning: 1, info: 2 };
  return html`<${Card} title="Alerts" class="wide" id="active-alerts">
    <${Loaded} poll=${poll} render=${(a) => {
      const now = a.alerts
        .filter((x) => x.state === 'firing' || x.state === 'pending')
        .sort((x, y) => (x.state === y.state ? 0 : x.state === 'firing' ? -1 : 1)
          || (rank[x.severity] ?? 3) - (rank[y.severity] ?? 3));
      if (!a.enabled) return html`<p class="unavailable">Alerts are off (--no-alerts).</p>`;
      if (now.length === 0) return html`<p class="ok">No alert firing or pending (${a.rules} rules).</p>`;
      return html`<ul class="plain alerts">${now.slice(0, 10).map((x) => html`<li data-alert=${x.name}>
          <span class=${`sev ${x.severity}`}>${x.severity}</span> <strong>${x.name}</strong>
          ${x.state === 'pending' ? ' (pending)' : ''}${x.silenced ? ' (silenced)' : ''}: ${x.annotations.summary ?? entity(x.labels)}</li>`)}</ul>
        ${now.length > 10 ? html`<p class="hint">and ${now.length - 10} more.</p>` : null}`;
    }} />
    <p class="hint"><a href="#/alerts">Alerts and their log</a></p>
  </${Card}>`;
}

function LiveRates() {
  const all = useObservable(rates);
  const summary = useObservable(latest);
  const names = [...all.keys()].sort();
  return html`<${Card} title="Live rates" class="wide" id="live-rates">
    ${names.length === 0
      ? html`<p class="loading">Waiting for the stream's first interval…</p>`
      : names.map((name) => html`<${IfaceChart} key=${name} name=${name} r=${all.get(name)} />`)}
    ${summary
      ? html`<p class="hint">Last ${duration(WINDOW_SECONDS)}, every ${summary.interval_seconds.toFixed(1)} s;${' '}
          ${summary.devices} devices and ${summary.flows} flows tracked.</p>`
      : null}
  </${Card}>`;
}

function IfaceChart({ name, r }) {
  const data = useMemo(() => [r.t, r.rx, r.tx], [r]);
  const last = r.t.length - 1;
  return html`<div class="iface-chart" data-iface=${name}>
    <h3>${name} <span class="now">rx ${bitRate(r.rx[last])} · tx ${bitRate(r.tx[last])}</span></h3>
    <${Chart} data=${data} series=${RATE_SERIES} format=${bitRate} label=${`${name}: receive and transmit rates`} height=${180} />
  </div>`;
}

function Busiest({ devices }) {
  return html`<${Card} title="Busiest devices now">
    <${Loaded} poll=${devices} render=${(d) => {
      const top = d.devices
        .filter((x) => !x.group)
        .map((x) => ({ ...x, rate: x.rx.bits_per_second + x.tx.bits_per_second }))
        .sort((a, b) => b.rate - a.rate || b.tx.bytes + b.rx.bytes - (a.tx.bytes + a.rx.bytes))
        .slice(0, 5);
      if (top.length === 0) return html`<p>No device seen yet.</p>`;
      return html`<ol class="busiest">
        ${top.map((x) => html`<li>
          <a href=${deviceHref(x.mac)}>${deviceName(x) || x.mac}</a>
          <span class="num">↓ ${bitRate(x.rx.bits_per_second)} ↑ ${bitRate(x.tx.bits_per_second)}</span>
        </li>`)}
      </ol>`;
    }} />
  </${Card}>`;
}

function Host({ system }) {
  return html`<${Card} title="Host">
    <${Loaded} poll=${system} render=${(s) => {
      const root = Array.isArray(s.filesystems)
        ? s.filesystems.find((f) => f.mount_point === '/') ?? s.filesystems[0]
        : s.filesystems;
      const temp = isUnavailable(s.temperatures) ? s.temperatures : s.temperatures.hottest_cpu_celsius;
      return html`<div class="stats">
        <${Stat} label="CPU" value=${avail(s.cpu, (c) => percent(c.usage_percent))} />
        <${Stat} label="memory used" value=${avail(s.memory, (m) => `${percent(m.used_percent)} of ${bytes(m.total_bytes)}`)} />
        <${Stat} label=${root && !isUnavailable(root) ? `disk ${root.mount_point}` : 'disk'}
          value=${avail(root, (f) => `${percent(f.used_percent)} of ${bytes(f.total_bytes)}`)} />
        <${Stat} label="hottest CPU sensor" value=${avail(temp, celsius)} />
        <${Stat} label="load (1 min)" value=${avail(s.load_average, (l) => l.one.toFixed(2))} />
        <${Stat} label="uptime" value=${avail(s.uptime_seconds, duration)} />
      </div>`;
    }} />
  </${Card}>`;
}

function Gateways() {
  const latency = usePoll('/api/v1/latency', 5000);
  return html`<${Card} title="Gateway latency">
    <${Loaded} poll=${latency} render=${(l) =>
      l.targets.length === 0
        ? html`<p class="unavailable">unavailable: no probe target (${l.target_selection}: none found)</p>`
        : html`<ul class="plain">
            ${l.targets.map((t) => html`<li>
              <strong>${t.address}</strong>${t.interface ? ` via ${t.interface}` : ''}:
              ${avail(t.rtt, (r) => `${duration(r.avg_seconds)} avg`)},
              loss ${avail(t.loss_percent, (p) => percent(p, 0))}
            </li>`)}
          </ul>`} />
    <p class="hint"><a href="#/latency">Every target</a></p>
  </${Card}>`;
}

function Counts({ devices }) {
  return html`<${Card} title="Devices by status">
    <${Loaded} poll=${devices} render=${(d) => {
      const counts = { active: 0, idle: 0, gone: 0, unknown: 0 };
      for (const x of d.devices) if (!x.group) counts[x.status ?? 'unknown'] += 1;
      return html`<div class="stats">
        ${Object.entries(counts).map(([k, v]) => html`<${Stat} label=${k} value=${v}
          title=${k === 'unknown' ? 'Seen in traffic, not (yet) by discovery' : undefined} />`)}
      </div>
      <p class="hint"><a href="#/devices">All devices</a> (group addresses left out)</p>`;
    }} />
  </${Card}>`;
}

/** Only what degrades: full maps, evictions, a degraded history. */
function Health() {
  const ifaces = usePoll('/api/v1/interfaces', 5000);
  const health = usePoll('/health', 5000);
  const issues = [];
  const i = ifaces.data;
  if (i) {
    for (const [name, m] of Object.entries(i.maps)) {
      if (m.fill_ratio >= 0.9) issues.push([`map ${name}`, m.fill_ratio, `${percent(m.fill_ratio * 100)} full`]);
      if (m.evictions > 0) issues.push([`map ${name}`, m.fill_ratio, `${m.evictions} evictions`]);
      if (m.misses > 0) issues.push([`map ${name}`, m.fill_ratio, `${m.misses} misses`]);
    }
    for (const [name, t] of Object.entries(i.tables)) {
      if (t.evictions > 0 || t.fill_ratio >= 0.9) {
        issues.push([`table ${name}`, t.fill_ratio, `${percent(t.fill_ratio * 100)} full, ${t.evictions} evictions`]);
      }
    }
    if (i.globals.map_update_failed > 0) issues.push(['map updates', 1, `${i.globals.map_update_failed} failed`]);
    if (i.globals.flows_aggregated > 0) {
      issues.push(['flow inserts', 1, `${i.globals.flows_aggregated} frames counted without their flow`]);
    }
  }
  const h = health.data;
  if (h && h.history !== 'ok') issues.push([`history ${h.history}`, 1, h.history_reason ?? '']);
  return html`<${Card} title="Maps, caches and history" class=${issues.length ? 'degraded' : ''}>
    <${Problem} error=${ifaces.error} />
    ${issues.length === 0
      ? html`<p class="ok">${i ? 'Healthy: no map or table near full, no eviction, history ok.' : 'Checking…'}</p>`
      : html`<ul class="plain">${issues.map(([what, ratio, text]) => html`<li>
          <strong>${what}</strong> <${Meter} ratio=${ratio} label=${what} /> ${text}</li>`)}</ul>`}
  </${Card}>`;
}
