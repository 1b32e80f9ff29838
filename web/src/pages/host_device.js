// One device of a host on a hub (#/host/<name>/device/<iface>/<mac>): what
// the host's latest push says of it, and its traffic over 1 h, 24 h or
// 7 d from its `device/<iface>/<mac>` series in the hub's history of the
// host, charted as the agent's own device page charts it.

import { html } from 'htm/preact';
import { hostPath } from '../api.js';
import { useNow, usePoll } from '../hooks.js';
import { ago, bitRate, bytes, count } from '../format.js';
import { Card, Loaded } from '../ui.js';
import { TrafficHistory } from './device.js';

const RANGES = ['1h', '24h', '7d'];
const SINCE = { '1h': '1h', '24h': '24h', '7d': '7days' };
const SECONDS = { '1h': 3600, '24h': 86400, '7d': 7 * 86400 };

/** The hub's address of a host's device view. */
export function hostDeviceHref(host, iface, mac) {
  return `#/host/${[host, 'device', iface, mac].map(encodeURIComponent).join('/')}`;
}

export function HostDevice({ name, iface, mac }) {
  const poll = usePoll(name ? hostPath(name) : null, 5000);
  const now = useNow(5000);
  const series = `device/${iface}/${mac}`;
  return html`<p class="crumbs"><a href="#/hosts">Hosts</a> › <a href=${`#/host/${encodeURIComponent(name)}`}>${name}</a> ›</p>
    <h1>${mac} <code class="sub">${iface} on ${name}</code></h1>
    <div class="grid">
      <${Loaded} poll=${poll} render=${(d) => {
        const dev = (d.devices ?? []).find((x) => x.mac === mac && x.interface === iface);
        return html`<${Facts} d=${dev} now=${now} />`;
      }} />
      <${TrafficHistory} id="host-device-history" ranges=${RANGES} pick=${(a) => a.history} seconds=${SECONDS}
        label=${(r) => `Traffic of ${mac} on ${name} over ${r}`}
        url=${(r) => `${hostPath(name)}/history?series=${encodeURIComponent(series)}&since=${SINCE[r]}`} />
    </div>`;
}

function Facts({ d, now }) {
  if (!d) {
    return html`<${Card} title="Latest push" id="host-device-facts">
      <p class="hint">The host's latest push does not list this device: its history below is what the hub kept.</p>
    </${Card}>`;
  }
  const b = d.bandwidth ?? {};
  const rows = [
    ['Name', d.deviceName ?? '—'],
    ['Address', d.ip ?? '—'],
    ['Status', d.status ?? '—'],
    ['Receiving', `${bitRate(b.rxRateBps)}, ${bytes(b.rxBytesTotal)} in all (${count(b.rxPacketsTotal)} packets)`],
    ['Sending', `${bitRate(b.txRateBps)}, ${bytes(b.txBytesTotal)} in all (${count(b.txPacketsTotal)} packets)`],
    ['Checked', d.timeChecked ? ago(d.timeChecked, now) : '—'],
  ];
  return html`<${Card} title="Latest push" id="host-device-facts">
    <dl class="facts">${rows.map(([k, v]) => html`<dt>${k}</dt><dd>${v}</dd>`)}</dl>
  </${Card}>`;
}
