// The flows the agent tracks now, refreshed every two seconds.

import { html } from 'htm/preact';
import { useState } from 'preact/hooks';
import { useNow, usePoll } from '../hooks.js';
import { ago, bitRate, bytes, count } from '../format.js';
import { Loaded, SortTable } from '../ui.js';

export function Flows() {
  const [sort, setSort] = useState('rate');
  const [filter, setFilter] = useState('');
  const poll = usePoll(`/api/v1/flows?limit=500&sort=${sort}`, 2000);
  const now = useNow(5000);
  return html`<h1>Flows</h1>
    <div class="controls">
      <label>Top 500 by <select value=${sort} onChange=${(e) => setSort(e.currentTarget.value)}>
        <option value="rate">rate</option><option value="bytes">bytes</option><option value="packets">packets</option>
      </select></label>
      <label>Filter <input type="search" value=${filter} placeholder="address, protocol, interface…"
        onInput=${(e) => setFilter(e.currentTarget.value)} /></label>
    </div>
    <${Loaded} poll=${poll} render=${(f) => {
      const words = filter.toLowerCase().split(/\s+/).filter(Boolean);
      const rows = f.flows.filter((x) => {
        const text = [x.interface, x.direction, x.protocol, x.src, x.dst, x.src_mac, x.dst_mac].join(' ').toLowerCase();
        return words.every((w) => text.includes(w));
      });
      return html`<p class="hint">${count(f.total)} flows tracked of ${count(f.capacity)}, ${count(f.evictions)} evicted;
          the history stored ${count(f.history.series_this_hour)} flow series this hour (cap ${count(f.history.series_per_hour)}).</p>
        <${SortTable} label="Flows" rows=${rows} initial=${{ key: sort === 'rate' ? 'rate' : sort, desc: true }}
          rowKey=${(x) => `${x.interface}/${x.direction}/${x.protocol_number}/${x.src}/${x.dst}`}
          columns=${flowColumns(now)} />`;
    }} />`;
}

/** The flow table's columns, as the agent's Flows page and a hub host's
 * flows show them (`now` for the "last seen" ages). */
export function flowColumns(now) {
  return [
    { key: 'src', label: 'Source', cell: (x) => html`<code>${x.src}</code>` },
    { key: 'dst', label: 'Destination', cell: (x) => html`<code>${x.dst}</code>` },
    { key: 'protocol', label: 'Protocol' },
    { key: 'interface', label: 'Interface', cell: (x) => `${x.interface} ${x.direction === 'ingress' ? 'in' : 'out'}` },
    { key: 'rate', label: 'Rate', num: true, value: (x) => x.bits_per_second, cell: (x) => bitRate(x.bits_per_second) },
    { key: 'bytes', label: 'Bytes', num: true, cell: (x) => html`<span title=${count(x.bytes)}>${bytes(x.bytes)}</span>` },
    { key: 'packets', label: 'Packets', num: true, cell: (x) => count(x.packets) },
    { key: 'last_seen', label: 'Last seen', value: (x) => Date.parse(x.last_seen), cell: (x) => ago(x.last_seen, now) },
  ];
}
