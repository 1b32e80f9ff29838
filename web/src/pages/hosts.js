// A hub's pages: every host that pushes to it (#/hosts) and one host
// (#/host/<name>): its figures, its devices (each linking to its view,
// host_device.js) and its history, its top
// talkers and flows (host_traffic.js), and its alerts, interfaces, system
// figures and latency probes (host_latest.js).
// The figures are those of the host's latest push (`GET /api/v1/hosts`).

import { html } from 'htm/preact';
import { useMemo, useState } from 'preact/hooks';
import { hostPath } from '../api.js';
import { Chart } from '../chart.js';
import { useNow, usePoll } from '../hooks.js';
import { ago, bitRate, bytes, count, localTime, percent } from '../format.js';
import { Card, Loaded, Meter, SortTable, Stat } from '../ui.js';
import { hostDeviceHref } from './host_device.js';
import { HostLatest } from './host_latest.js';
import { HostFlows, HostNotPushed, HostTop } from './host_traffic.js';

/** What a host row shows, each figure as text (the e2e test uses these). */
export function hostCells(h) {
  return {
    cpu: percent(h.cpuPercent),
    memory: percent(h.memoryPercent),
    disk: percent(h.diskPercent),
    rx: bitRate(h.rxBps),
    tx: bitRate(h.txBps),
    devices: count(h.devices),
  };
}

export function hostHref(name) {
  return `#/host/${encodeURIComponent(name)}`;
}

function Freshness({ h }) {
  return html`<span class=${`status ${h.stale ? 'bad' : 'ok'}`}>${h.stale ? 'stale' : 'fresh'}</span>`;
}

export function Hosts() {
  const poll = usePoll('/api/v1/hosts', 5000);
  const now = useNow(5000);
  const columns = [
    { key: 'host', label: 'Host', cell: (h) => html`<a href=${hostHref(h.host)}>${h.host}</a>` },
    {
      key: 'lastSeen',
      label: 'Last seen',
      value: (h) => Date.parse(h.lastSeen ?? h.lastSampleTime ?? '') || 0,
      cell: (h) => html`<span title=${localTime(h.lastSeen)}>${h.lastSeen ? ago(h.lastSeen, now) : 'not since the hub started'}</span>`,
    },
    { key: 'stale', label: 'State', value: (h) => (h.stale ? 1 : 0), cell: (h) => html`<${Freshness} h=${h} />` },
    { key: 'cpu', label: 'CPU', num: true, value: (h) => h.cpuPercent ?? -1, cell: (h) => hostCells(h).cpu },
    {
      key: 'memory',
      label: 'Memory',
      num: true,
      value: (h) => h.memoryPercent ?? -1,
      cell: (h) => html`<span title=${`${bytes(h.memoryUsedBytes)} of ${bytes(h.memoryTotalBytes)}`}>${hostCells(h).memory}</span>`,
    },
    { key: 'disk', label: 'Fullest disk', num: true, value: (h) => h.diskPercent ?? -1, cell: (h) => hostCells(h).disk },
    { key: 'rx', label: 'Receiving', num: true, value: (h) => h.rxBps ?? -1, cell: (h) => hostCells(h).rx },
    { key: 'tx', label: 'Sending', num: true, value: (h) => h.txBps ?? -1, cell: (h) => hostCells(h).tx },
    { key: 'devices', label: 'Devices', num: true, value: (h) => h.devices ?? -1, cell: (h) => hostCells(h).devices },
    { key: 'alerts', label: 'Alerts', num: true, value: (h) => alertCount(h.alerts), cell: (h) => html`<${AlertCell} alerts=${h.alerts} />` },
  ];
  return html`<h1>Hosts</h1>
    <${Loaded} poll=${poll} render=${(d) => {
      const stale = d.hosts.filter((h) => h.stale).length;
      const note = `${count(d.hosts.length)} hosts, ${count(stale)} stale (no push for ${d.staleAfterSeconds} s).`;
      return html`<p class="sub">${note}</p>
      <${SortTable} label="Hosts" columns=${columns} rows=${d.hosts} rowKey=${(h) => h.host}
        rowAttrs=${(h) => ({ 'data-host': h.host, 'data-last-seen': h.lastSeen ?? '' })}
        empty="No host has pushed to this hub yet: add a token with netmon-agent hub token add HOST." />`;
    }} />`;
}

export function Host({ name }) {
  const poll = usePoll(name ? hostPath(name) : null, 5000);
  const now = useNow(5000);
  return html`<p class="crumbs"><a href="#/hosts">Hosts</a> ›</p>
    <h1>${name}</h1>
    <${Loaded} poll=${poll} render=${(d) => {
      const h = d.summary;
      const c = hostCells(h);
      return html`<div class="grid">
        <${Card} title="Latest push" id="host-summary" data-last-seen=${h.lastSeen ?? ''}>
          <div class="stats">
            <${Stat} label="state" value=${html`<${Freshness} h=${h} />`} />
            <${Stat} label="last seen" value=${h.lastSeen ? ago(h.lastSeen, now) : '—'} title=${localTime(h.lastSeen)} />
            <${Stat} label="CPU" value=${c.cpu} />
            <${Stat} label="memory" value=${c.memory} title=${`${bytes(h.memoryUsedBytes)} of ${bytes(h.memoryTotalBytes)}`} />
            <${Stat} label="fullest disk" value=${c.disk} />
            <${Stat} label="receiving" value=${c.rx} />
            <${Stat} label="sending" value=${c.tx} />
            <${Stat} label="devices" value=${c.devices} title=${`${count(h.devicesActive)} active`} />
          </div>
          <${Meter} ratio=${(h.memoryPercent ?? 0) / 100} label="memory used" />
        </${Card}>
        <${HostHistory} name=${name} />
        <${HostDevices} name=${name} devices=${d.devices ?? []} now=${now} />
        <${HostTop} name=${name} devices=${d.devices} />
        <${HostFlows} name=${name} now=${now} />
        <${HostLatest} snapshot=${d.snapshot} now=${now} />
        <${HostNotPushed} />
      </div>`;
    }} />`;
}

const RANGES = ['1h', '24h', '7d'];
const SINCE = { '1h': '1h', '24h': '24h', '7d': '7days' };
const RATES = [
  { label: 'rx', color: '--rx' },
  { label: 'tx', color: '--tx' },
];
const LOAD = [
  { label: 'CPU', color: '--accent' },
  { label: 'memory', color: '--warn' },
];

/** A gauge field of a history point: its value, its average over a bucket. */
function gauge(v) {
  if (typeof v === 'number') return v;
  return v && typeof v === 'object' && Number.isFinite(v.avg) ? v.avg : null;
}

function HostHistory({ name }) {
  const [range, setRange] = useState('1h');
  const poll = usePoll(`${hostPath(name)}/history?since=${SINCE[range]}`, range === '1h' ? 5000 : 60000);
  const data = useMemo(() => {
    const points = poll.data?.history?.points ?? [];
    const col = (f) => points.map((p) => gauge(p.values[f]));
    const t = points.map((p) => p.at_ms / 1000);
    return {
      rates: [t, col('rx_bits_per_second'), col('tx_bits_per_second')],
      load: [t, col('cpu_percent'), col('memory_percent')],
    };
  }, [poll.data]);
  return html`<${Card} title="History" class="wide" id="host-history">
    <div class="controls" role="group" aria-label="Range">
      ${RANGES.map((r) => html`<button type="button" class=${r === range ? 'on' : ''}
        aria-pressed=${r === range} onClick=${() => setRange(r)}>${r}</button>`)}
    </div>
    <${Loaded} poll=${poll} render=${() => html`
      <${Chart} data=${data.rates} series=${RATES} format=${bitRate} label=${`${name}: receiving and sending`} />
      <${Chart} data=${data.load} series=${LOAD} format=${(v) => percent(v, 0)} height=${160}
        label=${`${name}: CPU and memory`} />`} />
  </${Card}>`;
}

function HostDevices({ name, devices, now }) {
  const columns = [
    {
      key: 'name',
      label: 'Device',
      value: (d) => d.deviceName ?? d.mac,
      cell: (d) => html`<a href=${hostDeviceHref(name, d.interface, d.mac)} title="Its traffic history on the hub">${d.deviceName ?? html`<code>${d.mac}</code>`}</a>`,
    },
    { key: 'ip', label: 'Address', cell: (d) => d.ip ?? '—' },
    { key: 'status', label: 'Status' },
    { key: 'rx', label: 'Receiving', num: true, value: (d) => d.bandwidth?.rxRateBps ?? 0, cell: (d) => bitRate(d.bandwidth?.rxRateBps) },
    { key: 'tx', label: 'Sending', num: true, value: (d) => d.bandwidth?.txRateBps ?? 0, cell: (d) => bitRate(d.bandwidth?.txRateBps) },
    { key: 'seen', label: 'Checked', value: (d) => d.timeChecked, cell: (d) => ago(d.timeChecked, now) },
  ];
  return html`<${Card} title=${`Devices (${devices.length})`} class="wide" id="host-devices">
    <${SortTable} label="Devices of the host" columns=${columns} rows=${devices} rowKey=${(d) => `${d.interface}/${d.mac}`}
      rowAttrs=${(d) => ({ 'data-mac': d.mac })} empty="The host's latest push lists no device." />
  </${Card}>`;
}

/** Firing alerts of a host's last push; -1 when it carried none. */
function alertCount(a) {
  return a && typeof a.firing === 'number' ? a.firing : -1;
}

/** "2 firing, 1 pending" with the alerts' names on hover; "—" when the
 * host's pushes carry no alerts (seed 000's agents, --no-alerts). */
function AlertCell({ alerts }) {
  if (!alerts || typeof alerts.firing !== 'number') return '—';
  const names = alerts.active.map((x) => `${x.name} (${x.severity}, ${x.state})`).join('\n');
  const text = alerts.firing || alerts.pending
    ? [alerts.firing ? `${alerts.firing} firing` : '', alerts.pending ? `${alerts.pending} pending` : ''].filter(Boolean).join(', ')
    : 'none';
  return html`<span class=${alerts.firing ? 'sev critical' : ''} title=${names || undefined} data-firing=${alerts.firing}>${text}</span>`;
}
