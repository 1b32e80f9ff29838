// One device: what each interface knows of it, its traffic over a chosen
// range (the history API picks the tier: raw, 1 min or 1 h), its current
// flows by peer, its addresses with when each was last seen, and, with the
// admin key, its name and note.

import { html } from 'htm/preact';
import { useMemo, useState } from 'preact/hooks';
import { api, devicePath } from '../api.js';
import { Chart } from '../chart.js';
import { useNow, usePoll } from '../hooks.js';
import { ago, bitRate, bytes, count, localTime } from '../format.js';
import { Card, Loaded, Problem, SortTable, deviceName } from '../ui.js';
import { toRates } from '../series.js';

const RANGES = ['1h', '24h', '7d', '30d', '1y'];
const FROM = { '1h': '1h', '24h': '24h', '7d': '7days', '30d': '30days', '1y': '365days' };
const SERIES = [
  { label: 'rx', color: '--rx' },
  { label: 'tx', color: '--tx' },
];

export function Device({ mac, role }) {
  const poll = usePoll(mac ? devicePath(mac) : null, 5000);
  const now = useNow(5000);
  return html`<p class="crumbs"><a href="#/devices">Devices</a> ›</p>
    <${Loaded} poll=${poll} render=${(d) => {
      const first = d.devices[0];
      const name = d.devices.map(deviceName).find(Boolean);
      return html`<h1>${name || d.mac} ${name ? html`<code class="sub">${d.mac}</code>` : null}</h1>
        ${first?.note ? html`<p class="note-text">${first.note}</p>` : null}
        <div class="grid">
          ${d.devices.map((x) => html`<${Facts} key=${x.interface} d=${x} now=${now} />`)}
          <${History} mac=${d.mac} />
          <${Peers} mac=${d.mac} />
          <${Addresses} devices=${d.devices} now=${now} />
          ${role === 'admin' ? html`<${Label} mac=${d.mac} current=${first} />` : null}
        </div>`;
    }} />`;
}

function Facts({ d, now }) {
  const rows = [
    ['Interface', d.interface],
    ['Status', d.status ?? 'unknown (not seen by discovery)'],
    ['Hostname', d.hostname ?? '—'],
    ['Vendor', d.vendor ?? (d.locally_administered ? 'locally administered address' : 'unregistered')],
    ['First seen', html`${localTime(d.first_seen)} (${ago(d.first_seen, now)})`],
    ['Last seen', html`${localTime(d.last_seen)} (${ago(d.last_seen, now)})`],
    ['Receiving', `${bitRate(d.rx.bits_per_second)}, ${bytes(d.rx.bytes)} in all (${count(d.rx.packets)} packets)`],
    ['Sending', `${bitRate(d.tx.bits_per_second)}, ${bytes(d.tx.bytes)} in all (${count(d.tx.packets)} packets)`],
    ['Seen by', d.sources.join(', ') || '—'],
  ];
  return html`<${Card} title=${`On ${d.interface}`}>
    <dl class="facts">${rows.map(([k, v]) => html`<dt>${k}</dt><dd>${v}</dd>`)}</dl>
  </${Card}>`;
}

function History({ mac }) {
  return html`<${TrafficHistory} id="device-history" ranges=${RANGES} label=${(r) => `Traffic of ${mac} over ${r}`}
    url=${(r) => `${devicePath(mac)}/history?from=${FROM[r]}`} />`;
}

/**
 * A device's rx/tx bit/s over a chosen range, from a history answer:
 * `url(range)` is polled, `pick(answer)` is what `toRates` reads (the
 * agent's answer itself; a hub wraps it in `history`). The x axis spans
 * the answer's `from` to `to`, or (a hub's answer has neither) the last
 * `seconds[range]` up to when it came.
 */
export function TrafficHistory({ id, ranges, url, label, pick = (d) => d, seconds = {} }) {
  const [range, setRange] = useState(ranges[0]);
  const poll = usePoll(url(range), range === ranges[0] ? 10000 : 60000);
  const answer = poll.data ? pick(poll.data) : null;
  const data = useMemo(() => (answer ? toRates(answer) : null), [poll.data]);
  const span = answer ? (Array.isArray(answer.series) ? answer.series[0] : answer) : null;
  const tier = span?.tier;
  const xRange = useMemo(() => {
    if (span?.from) return [Date.parse(span.from) / 1000, Date.parse(span.to) / 1000];
    const now = Date.now() / 1000;
    return span && seconds[range] ? [now - seconds[range], now] : undefined;
  }, [span?.from, span?.to, poll.data, range]);
  return html`<${Card} title="Traffic" class="wide" id=${id}>
    <div class="controls" role="group" aria-label="Range">
      ${ranges.map((r) => html`<button type="button" class=${r === range ? 'on' : ''}
        aria-pressed=${r === range} onClick=${() => setRange(r)}>${r}</button>`)}
      ${tier ? html`<span class="hint">from the ${tier === 'raw' ? 'raw samples' : `${tier} aggregates`}</span>` : null}
    </div>
    ${poll.error && poll.error.status === 404
      ? html`<p class="unavailable">unavailable: nothing stored for this device in the last ${range}</p>`
      : html`<${Problem} error=${poll.error} />`}
    ${data && data[0].length > 0
      ? html`<${Chart} data=${data} series=${SERIES} format=${bitRate} xRange=${xRange} label=${label(range)} />`
      : data ? html`<p class="unavailable">unavailable: no traffic stored in the last ${range}</p>` : null}
  </${Card}>`;
}

/** Its current flows, by peer address and protocol. */
function Peers({ mac }) {
  const poll = usePoll('/api/v1/flows?limit=1000&sort=bytes', 5000);
  return html`<${Card} title="Flows by peer" class="wide">
    <${Loaded} poll=${poll} render=${(f) => {
      const peers = new Map();
      for (const x of f.flows) {
        const out = x.src_mac === mac;
        if (!out && x.dst_mac !== mac) continue;
        const peer = out ? x.dst : x.src;
        const key = `${peer}/${x.protocol}`;
        const p = peers.get(key) ?? { peer, protocol: x.protocol, sent: 0, received: 0, rate: 0, flows: 0 };
        if (out) p.sent += x.bytes;
        else p.received += x.bytes;
        p.rate += x.bits_per_second;
        p.flows += 1;
        peers.set(key, p);
      }
      return html`<${SortTable} label="Flows by peer" rows=${[...peers.values()]}
        rowKey=${(p) => `${p.peer}/${p.protocol}`} initial=${{ key: 'total', desc: true }}
        empty="No flow of this device among the 1,000 largest tracked."
        columns=${[
          { key: 'peer', label: 'Peer', cell: (p) => html`<code>${p.peer}</code>` },
          { key: 'protocol', label: 'Protocol' },
          { key: 'sent', label: 'Sent', num: true, cell: (p) => bytes(p.sent) },
          { key: 'received', label: 'Received', num: true, cell: (p) => bytes(p.received) },
          { key: 'total', label: 'Total', num: true, value: (p) => p.sent + p.received, cell: (p) => bytes(p.sent + p.received) },
          { key: 'rate', label: 'Rate now', num: true, cell: (p) => bitRate(p.rate) },
          { key: 'flows', label: 'Flows', num: true },
        ]} />`;
    }} />
  </${Card}>`;
}

function Addresses({ devices, now }) {
  const seen = new Map();
  for (const d of devices) {
    for (const ip of d.ips) if (!seen.has(ip)) seen.set(ip, null);
    for (const a of d.addresses) {
      const old = seen.get(a.ip);
      if (!old || a.last_seen > old) seen.set(a.ip, a.last_seen);
    }
  }
  const rows = [...seen.entries()].sort((a, b) => String(b[1]).localeCompare(String(a[1])));
  return html`<${Card} title="Addresses">
    ${rows.length === 0
      ? html`<p>No address seen.</p>`
      : html`<ul class="plain">${rows.map(([ip, at]) => html`<li><code>${ip}</code>${' '}
          <span class="muted">${at ? `last seen ${ago(at, now)}` : 'seen in traffic'}</span></li>`)}</ul>`}
  </${Card}>`;
}

function Label({ mac, current }) {
  const [name, setName] = useState(current?.name ?? '');
  const [note, setNote] = useState(current?.note ?? '');
  const [state, setState] = useState(null);
  const save = async (e) => {
    e.preventDefault();
    setState({ busy: true });
    try {
      await api(`${devicePath(mac)}/label`, { method: 'PUT', body: { name, note } });
      setState({ done: `Saved ${localTime(new Date().toISOString())}.` });
    } catch (err) {
      setState({ error: err.kind === 'unavailable' ? `unavailable: ${err.message}` : err.message });
    }
  };
  return html`<${Card} title="Name and note">
    <form class="label-form" onSubmit=${save}>
      <label for="label-name">Name</label>
      <input id="label-name" name="name" maxlength="64" value=${name} onInput=${(e) => setName(e.currentTarget.value)} />
      <label for="label-note">Note</label>
      <textarea id="label-note" name="note" maxlength="1000" rows="3" value=${note} onInput=${(e) => setNote(e.currentTarget.value)}></textarea>
      <button type="submit" disabled=${state?.busy}>Save</button>
      <p class="hint" role="status">${state?.done ?? ''}${state?.error ? html`<span class="problem">${state.error}</span>` : ''}
        Stored in the history file; shown everywhere and on /metrics as the <code>name</code> label. Empty both to remove.</p>
    </form>
  </${Card}>`;
}
