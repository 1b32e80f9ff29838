// The host: CPU (total and per core), load, memory, swap, filesystems,
// temperatures, uptime and what it is.

import { html } from 'htm/preact';
import { usePoll } from '../hooks.js';
import { avail, bytes, celsius, duration, isUnavailable, localTime, percent } from '../format.js';
import { Card, Loaded, Meter, SortTable, Stat } from '../ui.js';

export function System() {
  const poll = usePoll('/api/v1/system', 5000);
  return html`<h1>System</h1>
    ${SystemCards(poll)}
    <${Containers} />`;
}

function SystemCards(poll) {
  return html`
    <${Loaded} poll=${poll} render=${(s) => html`<div class="grid">
      <${Card} title="Host">
        ${isUnavailable(s.host)
          ? html`<p class="unavailable">unavailable: ${s.host.unavailable}</p>`
          : html`<dl class="facts">
              <dt>Hostname</dt><dd>${s.host.hostname ?? '—'}</dd>
              <dt>System</dt><dd>${s.host.os_long_version ?? s.host.os_name ?? '—'}</dd>
              <dt>Kernel</dt><dd>${s.host.kernel ?? '—'}</dd>
              <dt>Booted</dt><dd>${localTime(s.host.boot_time)}</dd>
              <dt>Uptime</dt><dd>${avail(s.uptime_seconds, duration)}</dd>
            </dl>`}
      </${Card}>
      <${Card} title="CPU and load">
        ${isUnavailable(s.cpu)
          ? html`<p class="unavailable">unavailable: ${s.cpu.unavailable}</p>`
          : html`<${Stat} label="all cores" value=${percent(s.cpu.usage_percent)} />
              <ul class="plain cores">${s.cpu.cores.map((c) => html`<li>${c.name}
                <${Meter} ratio=${c.usage_percent / 100} label=${c.name} /> ${percent(c.usage_percent, 0)}</li>`)}</ul>`}
        <p>Load: ${avail(s.load_average, (l) => `${l.one.toFixed(2)}, ${l.five.toFixed(2)}, ${l.fifteen.toFixed(2)} (1, 5, 15 min)`)}</p>
      </${Card}>
      <${Card} title="Memory">
        <p>${avail(s.memory, (m) => html`<${Meter} ratio=${m.used_percent / 100} label="memory used" />
          ${bytes(m.used_bytes)} used of ${bytes(m.total_bytes)} (${percent(m.used_percent)}); ${bytes(m.available_bytes)} available, ${bytes(m.cached_bytes)} cached`)}</p>
        <p>Swap: ${avail(s.swap, (w) => (w.total_bytes === 0 ? 'none configured' : `${bytes(w.used_bytes)} used of ${bytes(w.total_bytes)}`))}</p>
      </${Card}>
      <${Card} title="Temperatures">
        ${isUnavailable(s.temperatures)
          ? html`<p class="unavailable">unavailable: ${s.temperatures.unavailable}</p>`
          : html`<ul class="plain">${s.temperatures.sensors.map((t) => html`<li>${t.label}${t.cpu ? ' (CPU)' : ''}:
              ${avail(t.celsius, celsius)}${t.critical_celsius ? `, critical at ${celsius(t.critical_celsius)}` : ''}</li>`)}</ul>`}
      </${Card}>
      <${Card} title="Filesystems" class="wide">
        ${isUnavailable(s.filesystems)
          ? html`<p class="unavailable">unavailable: ${s.filesystems.unavailable}</p>`
          : html`<${SortTable} label="Filesystems" rows=${s.filesystems} rowKey=${(f) => f.mount_point}
              columns=${[
                { key: 'mount_point', label: 'Mounted on', cell: (f) => html`<code>${f.mount_point}</code>` },
                { key: 'device', label: 'Device' },
                { key: 'fs_type', label: 'Type' },
                { key: 'used_percent', label: 'Used', num: true, cell: (f) => html`<${Meter} ratio=${f.used_percent / 100} label=${f.mount_point} /> ${percent(f.used_percent)}` },
                { key: 'used_bytes', label: 'Used', num: true, cell: (f) => bytes(f.used_bytes) },
                { key: 'total_bytes', label: 'Size', num: true, cell: (f) => bytes(f.total_bytes) },
                { key: 'free_bytes', label: 'Free', num: true, cell: (f) => bytes(f.free_bytes) },
                { key: 'read_only', label: 'Read-only', cell: (f) => (f.read_only ? 'yes' : 'no') },
              ]} />`}
      </${Card}>
    </div>`} />`;
}

/** The containers collector's view: the engine, each container's figures. */
function Containers() {
  const poll = usePoll('/api/v1/containers', 10000);
  const sent = (c, key) => (isUnavailable(c.traffic) ? -1 : c.traffic.reduce((m, t) => Math.max(m, t[key]), 0));
  return html`<${Card} title="Containers" id="containers" class="wide">
    <${Loaded} poll=${poll} render=${(r) => (isUnavailable(r.engine)
      ? html`<p class="unavailable">unavailable: ${r.engine.unavailable}</p>`
      : html`<p class="hint">${r.engine.name} ${r.engine.version} at <code>${r.engine.socket}</code>;
          ${Object.entries(r.states).map(([s, n]) => `${n} ${s}`).join(', ') || 'no container'}${r.omitted
          ? `; ${r.omitted} not listed (--containers-max)` : ''}.</p>
        <${SortTable} label="Containers" rows=${r.containers} rowKey=${(c) => c.id}
          rowAttrs=${(c) => ({ 'data-container': c.name })}
          empty="No container."
          columns=${[
            { key: 'name', label: 'Name', cell: (c) => html`<strong>${c.name}</strong>` },
            { key: 'image', label: 'Image', cell: (c) => c.image || '—' },
            { key: 'state', label: 'State', cell: (c) => html`<span title=${c.status}>${c.state}</span>` },
            { key: 'cpu', label: 'CPU', num: true, value: (c) => (isUnavailable(c.cpu_percent) ? -1 : c.cpu_percent),
              cell: (c) => avail(c.cpu_percent, (p) => percent(p)) },
            { key: 'memory', label: 'Memory', num: true, value: (c) => (isUnavailable(c.memory_bytes) ? -1 : c.memory_bytes),
              cell: (c) => avail(c.memory_bytes, bytes) },
            { key: 'tx', label: 'Sent', num: true, value: (c) => sent(c, 'tx_bytes'),
              cell: (c) => avail(c.traffic, (l) => (l.length ? l.map((t) => `${bytes(t.tx_bytes)} (${t.interface})`).join(', ') : 'not seen')) },
            { key: 'rx', label: 'Received', num: true, value: (c) => sent(c, 'rx_bytes'),
              cell: (c) => avail(c.traffic, (l) => (l.length ? l.map((t) => `${bytes(t.rx_bytes)} (${t.interface})`).join(', ') : 'not seen')) },
          ]} />`)} />
  </${Card}>`;
}
