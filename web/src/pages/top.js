// Top talkers over a window, from the history: devices rank by what they
// sent, flows by their bytes.

import { html } from 'htm/preact';
import { useState } from 'preact/hooks';
import { usePoll } from '../hooks.js';
import { bytes, count, localTime } from '../format.js';
import { Loaded, SortTable, deviceHref, deviceName } from '../ui.js';

const WINDOWS = ['5m', '1h', '24h', '7days', '30days'];

export function Top() {
  const [win, setWin] = useState('1h');
  const [family, setFamily] = useState('device');
  const [by, setBy] = useState('bytes');
  const poll = usePoll(`/api/v1/top?window=${win}&family=${family}&by=${by}&limit=25`, 10000);
  const devices = usePoll(family === 'device' ? '/api/v1/devices' : null, 30000);
  const names = new Map((devices.data?.devices ?? []).map((d) => [d.mac, deviceName(d)]));
  return html`<h1>Top talkers</h1>
    <div class="controls">
      <label>Window <select value=${win} onChange=${(e) => setWin(e.currentTarget.value)}>
        ${WINDOWS.map((w) => html`<option value=${w}>${w}</option>`)}</select></label>
      <label>Rank <select value=${family} onChange=${(e) => setFamily(e.currentTarget.value)}>
        <option value="device">devices (by what they sent)</option><option value="flow">flows</option></select></label>
      <label>By <select value=${by} onChange=${(e) => setBy(e.currentTarget.value)}>
        <option value="bytes">bytes</option><option value="packets">packets</option></select></label>
    </div>
    <${Loaded} poll=${poll} render=${(t) => html`
      <p class="hint">${localTime(t.from)} to ${localTime(t.to)}, ranked by <code>${t.by}</code>.</p>
      <${SortTable} label="Top talkers" rows=${t.top.map((r, i) => ({ ...r, rank: i + 1 }))}
        rowKey=${(r) => r.series} initial=${{ key: 'rank', desc: false }} empty="Nothing stored in this window."
        columns=${[
          { key: 'rank', label: '#', num: true },
          { key: 'series', label: family === 'device' ? 'Device' : 'Flow', cell: (r) => talker(r.series, names) },
          {
            key: 'value',
            label: by === 'bytes' ? 'Bytes' : 'Packets',
            num: true,
            cell: (r) => html`<span title=${count(r.value)}>${by === 'bytes' ? bytes(r.value) : count(r.value)}</span>`,
          },
        ]} />`} />`;
}

const PROTOCOLS = { 1: 'icmp', 6: 'tcp', 17: 'udp', 58: 'icmpv6' };

/** A series name shown for people: device/<iface>/<mac>, flow/<iface>/<dir>/<proto>/<src>/<dst>. */
export function talker(series, names, link = true) {
  const parts = series.split('/');
  if (parts[0] === 'device') {
    const mac = parts.slice(2).join('/');
    const who = names.get(mac) || mac;
    return html`${link ? html`<a href=${deviceHref(mac)}>${who}</a>` : who} <span class="muted">on ${parts[1]}</span>`;
  }
  if (parts[0] === 'flow' && parts.length >= 6) {
    const [, iface, dir, proto, src, dst] = parts;
    return html`<code>${src}</code> → <code>${dst}</code>${' '}<span class="muted">${PROTOCOLS[proto] ?? `proto ${proto}`}, ${dir === 'ingress' ? 'in' : 'out'} on ${iface}</span>`;
  }
  return html`<code>${series}</code>`;
}
