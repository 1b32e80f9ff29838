// Interfaces: the kernel's counters, errors, drops and utilization of each,
// what netmon's hooks counted on the watched ones, and its maps and tables.

import { html } from 'htm/preact';
import { usePoll } from '../hooks.js';
import { avail, bitRate, bytes, count, isUnavailable, percent } from '../format.js';
import { Card, Loaded, Meter, SortTable } from '../ui.js';

export function Interfaces() {
  const poll = usePoll('/api/v1/interfaces', 2000);
  return html`<h1>Interfaces</h1>
    <${Loaded} poll=${poll} render=${(d) => html`
      <${Card} title="Kernel counters">
        ${isUnavailable(d.stats)
          ? html`<p class="unavailable">unavailable: ${d.stats.unavailable}</p>`
          : html`<${SortTable} label="Interfaces" rows=${d.stats.interfaces} rowKey=${(i) => i.name}
              columns=${[
                { key: 'name', label: 'Name', cell: (i) => html`<strong>${i.name}</strong>${i.watched ? html` <span class="tag">watched</span>` : null}` },
                { key: 'oper_state', label: 'State' },
                { key: 'speed', label: 'Speed', value: (i) => (isUnavailable(i.speed_mbps) ? -1 : i.speed_mbps), cell: (i) => avail(i.speed_mbps, (s) => bitRate(s * 1e6)) },
                { key: 'mtu', label: 'MTU', num: true },
                rate('rx', 'Rx rate', (i) => i.rates, 'rx_bits_per_second'),
                rate('tx', 'Tx rate', (i) => i.rates, 'tx_bits_per_second'),
                { key: 'util', label: 'Utilization', value: (i) => util(i), cell: (i) => avail(i.utilization, (u) => `rx ${percent(u.rx_percent)} · tx ${percent(u.tx_percent)}`) },
                counter('rx_bytes', 'Rx bytes', bytes),
                counter('tx_bytes', 'Tx bytes', bytes),
                counter('rx_errors', 'Rx errors', count),
                counter('tx_errors', 'Tx errors', count),
                counter('rx_dropped', 'Rx drops', count),
                counter('tx_dropped', 'Tx drops', count),
              ]} />`}
      </${Card}>
      <${Card} title="Counted by netmon">
        <${SortTable} label="Watched interfaces" rows=${d.interfaces} rowKey=${(i) => i.name}
          columns=${[
            { key: 'name', label: 'Name' },
            { key: 'hooks', label: 'Hooks', value: (i) => i.ingress_hook, cell: (i) => `${i.ingress_hook} in, ${i.egress_hook} out` },
            { key: 'rx_rate', label: 'Rx rate', num: true, value: (i) => i.rx.bits_per_second, cell: (i) => bitRate(i.rx.bits_per_second) },
            { key: 'tx_rate', label: 'Tx rate', num: true, value: (i) => i.tx.bits_per_second, cell: (i) => bitRate(i.tx.bits_per_second) },
            { key: 'rx_bytes', label: 'Rx', num: true, value: (i) => i.rx.bytes, cell: (i) => bytes(i.rx.bytes) },
            { key: 'tx_bytes', label: 'Tx', num: true, value: (i) => i.tx.bytes, cell: (i) => bytes(i.tx.bytes) },
            { key: 'other', label: 'Evicted flows', num: true, value: (i) => i.other_flows.evicted_flows, cell: (i) => count(i.other_flows.evicted_flows) },
          ]} />
        <p class="hint">Frames: ${count(d.globals.packets)} (${bytes(d.globals.bytes)}); non-IP ${count(d.globals.non_ip)},
          ARP ${count(d.globals.arp)}, VLAN ${count(d.globals.vlan)}, malformed ${count(d.globals.malformed)},
          counted without their flow ${count(d.globals.flows_aggregated)}, failed map updates ${count(d.globals.map_update_failed)}.</p>
      </${Card}>
      <${Card} title="Maps and tables">
        <${SortTable} label="Maps and tables"
          rows=${[
            ...Object.entries(d.maps).map(([k, m]) => ({ name: `map ${k}`, ...m, evictions: m.evictions ?? m.misses })),
            ...Object.entries(d.tables).map(([k, t]) => ({ name: `table ${k}`, ...t })),
          ]}
          rowKey=${(m) => m.name}
          columns=${[
            { key: 'name', label: 'What' },
            { key: 'fill_ratio', label: 'Fill', num: true, cell: (m) => html`<${Meter} ratio=${m.fill_ratio} label=${m.name} /> ${percent(m.fill_ratio * 100)}` },
            { key: 'entries', label: 'Entries', num: true, value: (m) => m.entries ?? m.slots_used, cell: (m) => count(m.entries ?? m.slots_used) },
            { key: 'capacity', label: 'Capacity', num: true, cell: (m) => count(m.capacity) },
            { key: 'evictions', label: 'Evictions / misses', num: true, cell: (m) => count(m.evictions) },
          ]} />
      </${Card}>`} />`;
}

function util(i) {
  return isUnavailable(i.utilization) ? -1 : Math.max(i.utilization.rx_percent, i.utilization.tx_percent);
}

function rate(key, label, get, field) {
  return {
    key,
    label,
    num: true,
    value: (i) => (isUnavailable(get(i)) ? -1 : get(i)[field]),
    cell: (i) => avail(get(i), (r) => bitRate(r[field])),
  };
}

function counter(key, label, fmt) {
  return {
    key,
    label,
    num: true,
    value: (i) => (isUnavailable(i.counters) ? -1 : i.counters[key]),
    cell: (i) => avail(i.counters, (c) => fmt(c[key])),
  };
}
