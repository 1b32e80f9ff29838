// Every device: sortable, filterable, refreshed every two seconds. Group
// (broadcast and multicast) addresses are hidden unless asked for.

import { html } from 'htm/preact';
import { useState } from 'preact/hooks';
import { useNow, usePoll } from '../hooks.js';
import { ago, bitRate, bytes, count, localTime } from '../format.js';
import { Loaded, SortTable, deviceHref, deviceName } from '../ui.js';

export function Devices() {
  const poll = usePoll('/api/v1/devices', 2000);
  const now = useNow(5000);
  const [filter, setFilter] = useState('');
  const [groups, setGroups] = useState(false);
  return html`<h1>Devices</h1>
    <div class="controls">
      <label>Filter <input type="search" value=${filter} placeholder="name, vendor, IP, MAC, interface…"
        onInput=${(e) => setFilter(e.currentTarget.value)} /></label>
      <label class="check"><input type="checkbox" checked=${groups}
        onChange=${(e) => setGroups(e.currentTarget.checked)} /> Show group addresses</label>
    </div>
    <${Loaded} poll=${poll} render=${(d) => {
      const words = filter.toLowerCase().split(/\s+/).filter(Boolean);
      const rows = d.devices
        .filter((x) => groups || !x.group)
        .filter((x) => {
          const text = [deviceName(x), x.hostname, x.vendor, x.mac, x.interface, x.status, ...x.ips]
            .filter(Boolean).join(' ').toLowerCase();
          return words.every((w) => text.includes(w));
        });
      const hidden = d.devices.filter((x) => x.group).length;
      return html`
        <p class="hint">${rows.length} of ${d.devices.length} devices shown${!groups && hidden ? `, ${hidden} group addresses hidden` : ''};
          updated ${ago(d.updated, now)}. Device table: ${count(d.table.entries)} of ${count(d.table.capacity)},${' '}
          ${count(d.table.evictions)} evictions.</p>
        <${SortTable} label="Devices" rows=${rows} rowKey=${(x) => `${x.interface}/${x.mac}`}
          rowAttrs=${(x) => ({ 'data-mac': x.mac })}
          initial=${{ key: 'total', desc: true }} empty="No device matches."
          columns=${COLUMNS(now)} />`;
    }} />`;
}

const COLUMNS = (now) => [
  {
    key: 'name',
    label: 'Name',
    value: (x) => deviceName(x) || `~${x.mac}`,
    cell: (x) => html`<a href=${deviceHref(x.mac)} class="name">${deviceName(x) || html`<span class="muted">unnamed</span>`}</a>
      ${x.note ? html`<span class="note" title=${x.note}>✎</span>` : null}
      ${x.self ? html` <span class="tag">this host</span>` : null}${x.group ? html` <span class="tag">group</span>` : null}`,
  },
  { key: 'vendor', label: 'Vendor', cell: (x) => x.vendor ?? html`<span class="muted">—</span>` },
  { key: 'ips', label: 'IPs', value: (x) => x.ips[0] ?? '', cell: (x) => html`<span class="ips">${x.ips.join(', ') || '—'}</span>` },
  { key: 'mac', label: 'MAC', cell: (x) => html`<a href=${deviceHref(x.mac)}><code>${x.mac}</code></a>` },
  { key: 'interface', label: 'Interface' },
  { key: 'status', label: 'Status', cell: (x) => html`<span class=${`status ${x.status ?? 'unknown'}`}>${x.status ?? 'unknown'}</span>` },
  rate('rx_rate', 'Rx rate', (x) => x.rx.bits_per_second),
  rate('tx_rate', 'Tx rate', (x) => x.tx.bits_per_second),
  total('rx_bytes', 'Rx total', (x) => x.rx),
  total('tx_bytes', 'Tx total', (x) => x.tx),
  {
    key: 'total',
    label: 'Total',
    num: true,
    value: (x) => x.rx.bytes + x.tx.bytes,
    cell: (x) => bytes(x.rx.bytes + x.tx.bytes),
  },
  {
    key: 'last_seen',
    label: 'Last seen',
    value: (x) => Date.parse(x.last_seen),
    cell: (x) => html`<span title=${localTime(x.last_seen)}>${ago(x.last_seen, now)}</span>`,
  },
];

function rate(key, label, get) {
  return { key, label, num: true, value: get, cell: (x) => bitRate(get(x)) };
}

function total(key, label, get) {
  return {
    key,
    label,
    num: true,
    value: (x) => get(x).bytes,
    cell: (x) => html`<span data-bytes=${get(x).bytes} title=${`${count(get(x).bytes)} bytes, ${count(get(x).packets)} packets`}>${bytes(get(x).bytes)}</span>`,
  };
}
