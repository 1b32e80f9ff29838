// A host's traffic on a hub: its latest push's flows (the agent's Flows
// page, as far as the push lists them: the top --push-flows by rate) and
// its top talkers over a window, ranked from the host's history on the hub
// (the agent's Top talkers page, among the devices and flows its pushes
// listed). What a push cannot hold says so.

import { html } from 'htm/preact';
import { useState } from 'preact/hooks';
import { hostPath } from '../api.js';
import { usePoll } from '../hooks.js';
import { bytes, count, isUnavailable, localTime } from '../format.js';
import { Card, Loaded, SortTable } from '../ui.js';
import { flowColumns } from './flows.js';
import { talker } from './top.js';

/** A flow's row key, as the agent's Flows page keys it. */
export function flowKey(x) {
  return `${x.interface}/${x.direction}/${x.protocol_number}/${x.src}/${x.dst}`;
}

export function HostFlows({ name, now }) {
  const poll = usePoll(`${hostPath(name)}/flows`, 5000);
  return html`<${Card} title="Flows" class="wide" id="host-flows">
    <${Loaded} poll=${poll} render=${(f) => {
      if (isUnavailable(f)) return html`<p class="unavailable">unavailable: ${f.unavailable}</p>`;
      return html`<p class="hint">${count(f.total)} flows tracked of ${count(f.capacity)}, ${count(f.evictions)} evicted;
          the push lists the top ${count(f.limit)} by rate${f.omitted ? `, ${count(f.omitted)} more not in the push` : ''}${' '}
          (as of ${localTime(f.updated)}).</p>
        <${SortTable} label="Flows of the host" rows=${f.flows} initial=${{ key: 'rate', desc: true }}
          rowKey=${flowKey} rowAttrs=${(x) => ({ 'data-flow': flowKey(x) })}
          empty="The host's latest push lists no flow."
          columns=${flowColumns(now)} />`;
    }} />
  </${Card}>`;
}

const WINDOWS = ['5m', '1h', '24h', '7days'];

export function HostTop({ name, devices }) {
  const [win, setWin] = useState('1h');
  const [family, setFamily] = useState('device');
  const [by, setBy] = useState('bytes');
  const poll = usePoll(`${hostPath(name)}/top?window=${win}&family=${family}&by=${by}&limit=25`, 10000);
  const names = new Map((devices ?? []).filter((d) => d.deviceName).map((d) => [d.mac, d.deviceName]));
  return html`<${Card} title="Top talkers" class="wide" id="host-top">
    <div class="controls">
      <label>Window <select value=${win} onChange=${(e) => setWin(e.currentTarget.value)}>
        ${WINDOWS.map((w) => html`<option value=${w}>${w}</option>`)}</select></label>
      <label>Rank <select name="family" value=${family} onChange=${(e) => setFamily(e.currentTarget.value)}>
        <option value="device">devices (by what they sent)</option><option value="flow">flows</option></select></label>
      <label>By <select value=${by} onChange=${(e) => setBy(e.currentTarget.value)}>
        <option value="bytes">bytes</option><option value="packets">packets</option></select></label>
    </div>
    <${Loaded} poll=${poll} render=${(t) => html`
      <p class="hint">${localTime(t.from)} to ${localTime(t.to)}, ranked by <code>${t.by}</code> from the hub's history
        of the devices and flows the host's pushes listed.</p>
      <${SortTable} label="Top talkers of the host" rows=${t.top.map((r, i) => ({ ...r, rank: i + 1 }))}
        rowKey=${(r) => r.series} rowAttrs=${(r) => ({ 'data-series': r.series })}
        initial=${{ key: 'rank', desc: false }} empty="Nothing stored in this window."
        columns=${[
          { key: 'rank', label: '#', num: true },
          { key: 'series', label: family === 'device' ? 'Device' : 'Flow', cell: (r) => talker(r.series, names, false) },
          {
            key: 'value',
            label: by === 'bytes' ? 'Bytes' : 'Packets',
            num: true,
            cell: (r) => html`<span title=${count(r.value)}>${by === 'bytes' ? bytes(r.value) : count(r.value)}</span>`,
          },
        ]} />`} />
  </${Card}>`;
}

/** The agent's pages a push does not carry, said rather than left empty. */
export function HostNotPushed() {
  return html`<${Card} title="Security and device details" class="wide" id="host-not-pushed">
    <p class="hint">A push carries no security findings, compliance checks or package changes, and no
      device labels or discovery details: those are on the host's own dashboard (its agent's address).
      The hub keeps each device's and listed flow's traffic: the top talkers above, and each device's
      history on its own view (a device's link in the devices card).</p>
  </${Card}>`;
}
