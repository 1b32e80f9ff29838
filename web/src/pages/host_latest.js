// A host's pages on a hub, from its latest push (the snapshot the hub
// keeps for it): its alerts, its interfaces, its system figures and its
// latency probes, as the agent's own pages show them. Flows and top
// talkers are in host_traffic.js.

import { html } from 'htm/preact';
import { ago, avail, bitRate, bytes, count, duration, isUnavailable, localTime, percent } from '../format.js';
import { Card, SortTable } from '../ui.js';
import { entity } from './alerts.js';

const SEVERITY_RANK = { critical: 0, warning: 1, info: 2 };

/** The cards of a host's latest snapshot; a note when the hub has none. */
export function HostLatest({ snapshot, now }) {
  if (!snapshot) {
    return html`<${Card} title="Latest push" class="wide" id="host-latest">
      <p class="hint">The hub has no push of this host since it started: its pages return with the next one.</p>
    </${Card}>`;
  }
  return html`
    <${HostAlerts} alerts=${snapshot.alerts} now=${now} />
    <${HostInterfaces} interfaces=${snapshot.network?.interfaces ?? []} />
    <${HostSystem} metrics=${snapshot.metrics ?? {}} />
    <${HostLatency} latency=${snapshot.latency} />`;
}

function HostAlerts({ alerts, now }) {
  let body;
  if (!alerts) body = html`<p class="hint">This host's pushes carry no alerts.</p>`;
  else if (isUnavailable(alerts)) body = html`<p class="unavailable">unavailable: ${alerts.unavailable}</p>`;
  else {
    body = html`<p class="hint">${alerts.firing} firing, ${alerts.pending} pending${alerts.omitted
      ? `; ${alerts.omitted} more not listed` : ''}.</p>
      <${SortTable} label="The host's active alerts" rows=${alerts.active}
        rowKey=${(a) => `${a.name}/${entity(a.labels)}`}
        rowAttrs=${(a) => ({ 'data-alert': a.name, 'data-state': a.state })}
        empty="No alert pending or firing."
        columns=${[
          { key: 'name', label: 'Alert', cell: (a) => html`<strong>${a.name}</strong>` },
          { key: 'severity', label: 'Severity', value: (a) => SEVERITY_RANK[a.severity] ?? 3,
            cell: (a) => html`<span class=${`sev ${a.severity}`}>${a.severity}</span>` },
          { key: 'state', label: 'State', cell: (a) => (a.silenced ? `${a.state} (silenced)` : a.state) },
          { key: 'entity', label: 'Of', value: (a) => entity(a.labels), cell: (a) => html`<code>${entity(a.labels) || '—'}</code>` },
          { key: 'summary', label: 'Summary', cell: (a) => a.summary ?? '—' },
          { key: 'since', label: 'Since', value: (a) => Date.parse(a.since), cell: (a) => ago(a.since, now) },
        ]} />`;
  }
  return html`<${Card} title="Alerts" class="wide" id="host-alerts">${body}</${Card}>`;
}

function HostInterfaces({ interfaces }) {
  return html`<${Card} title="Interfaces" class="wide" id="host-interfaces">
    <${SortTable} label="The host's interfaces" rows=${interfaces} rowKey=${(i) => i.name}
      rowAttrs=${(i) => ({ 'data-iface': i.name })}
      columns=${[
        { key: 'name', label: 'Interface', cell: (i) => html`<strong>${i.name}</strong>${i.watched ? ' (watched)' : ''}` },
        { key: 'operState', label: 'State' },
        { key: 'ipAddresses', label: 'Addresses', value: (i) => i.ipAddresses.join(' '), cell: (i) => i.ipAddresses.join(', ') || '—' },
        { key: 'speedMbps', label: 'Speed', num: true, value: (i) => i.speedMbps ?? -1, cell: (i) => (i.speedMbps ? `${i.speedMbps} Mbit/s` : '—') },
        { key: 'rxRateBps', label: 'Receiving', num: true, value: (i) => i.rxRateBps ?? -1, cell: (i) => bitRate(i.rxRateBps) },
        { key: 'txRateBps', label: 'Sending', num: true, value: (i) => i.txRateBps ?? -1, cell: (i) => bitRate(i.txRateBps) },
        { key: 'rxBytesTotal', label: 'Received', num: true, value: (i) => i.rxBytesTotal ?? -1, cell: (i) => bytes(i.rxBytesTotal) },
        { key: 'txBytesTotal', label: 'Sent', num: true, value: (i) => i.txBytesTotal ?? -1, cell: (i) => bytes(i.txBytesTotal) },
        { key: 'utilizationPercent', label: 'Utilization', num: true, value: (i) => i.utilizationPercent ?? -1,
          cell: (i) => (i.utilizationPercent === null ? '—' : percent(i.utilizationPercent)) },
      ]} />
  </${Card}>`;
}

function HostSystem({ metrics: m }) {
  return html`<${Card} title="System" class="wide" id="host-system">
    <p>Uptime ${m.uptimeSeconds === null || m.uptimeSeconds === undefined ? '—' : duration(m.uptimeSeconds)};
      load ${m.loadAverage ? m.loadAverage.map((l) => l.toFixed(2)).join(', ') : '—'} (1, 5, 15 min);
      CPU per core ${m.cpuPerCore ? m.cpuPerCore.map((c) => percent(c, 0)).join(', ') : '—'};
      memory ${m.memory ? `${bytes(m.memory.usedBytes)} used of ${bytes(m.memory.totalBytes)}` : '—'}.</p>
    <${SortTable} label="The host's filesystems" rows=${m.disk ?? []} rowKey=${(f) => f.mountpoint}
      empty="The host's push lists no filesystem."
      columns=${[
        { key: 'mountpoint', label: 'Mounted on', cell: (f) => html`<code>${f.mountpoint}</code>` },
        { key: 'device', label: 'Device' },
        { key: 'fstype', label: 'Type' },
        { key: 'percentUsed', label: 'Used', num: true, value: (f) => f.percentUsed ?? -1, cell: (f) => (f.percentUsed === null ? '—' : percent(f.percentUsed)) },
        { key: 'usedBytes', label: 'Used', num: true, cell: (f) => bytes(f.usedBytes) },
        { key: 'totalBytes', label: 'Size', num: true, cell: (f) => bytes(f.totalBytes) },
        { key: 'freeBytes', label: 'Free', num: true, cell: (f) => bytes(f.freeBytes) },
      ]} />
  </${Card}>`;
}

function HostLatency({ latency }) {
  let body;
  if (!latency) body = html`<p class="hint">This host's pushes carry no latency probes.</p>`;
  else if (isUnavailable(latency)) body = html`<p class="unavailable">unavailable: ${latency.unavailable}</p>`;
  else {
    body = html`<${SortTable} label="The host's probe targets" rows=${latency} rowKey=${(t) => t.address}
      empty="No probe target."
      columns=${[
        { key: 'address', label: 'Target', cell: (t) => html`<code>${t.address}</code>` },
        { key: 'sent', label: 'Sent', num: true, cell: (t) => count(t.sent) },
        { key: 'received', label: 'Received', num: true, cell: (t) => count(t.received) },
        { key: 'loss', label: 'Loss', num: true, value: (t) => (isUnavailable(t.loss_percent) ? -1 : t.loss_percent),
          cell: (t) => avail(t.loss_percent, (p) => percent(p, 0)) },
        { key: 'avg', label: 'Avg', num: true, value: (t) => (isUnavailable(t.rtt) ? -1 : t.rtt.avg_seconds),
          cell: (t) => avail(t.rtt, (r) => duration(r.avg_seconds)) },
        { key: 'last_reply', label: 'Last reply', cell: (t) => (t.last_reply ? localTime(t.last_reply) : '—') },
      ]} />`;
  }
  return html`<${Card} title="Latency" class="wide" id="host-latency">${body}</${Card}>`;
}
