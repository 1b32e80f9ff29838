// Latency probes: each target's last cycle.

import { html } from 'htm/preact';
import { useNow, usePoll } from '../hooks.js';
import { ago, avail, count, duration, isUnavailable, percent } from '../format.js';
import { Loaded, SortTable } from '../ui.js';

export function Latency() {
  const poll = usePoll('/api/v1/latency', 5000);
  const now = useNow(5000);
  const rtt = (field) => (t) => (isUnavailable(t.rtt) ? -1 : t.rtt[field]);
  return html`<h1>Latency</h1>
    <${Loaded} poll=${poll} render=${(l) => html`
      <p class="hint">Targets: ${l.target_selection}; ${l.probes_per_cycle} probes a cycle;
        sockets: IPv4 ${avail(l.sockets.ipv4)}, IPv6 ${avail(l.sockets.ipv6)}.</p>
      <${SortTable} label="Probe targets" rows=${l.targets} rowKey=${(t) => t.address}
        empty="unavailable: no probe target (no default gateway, and no --probe-target)"
        columns=${[
          { key: 'address', label: 'Target', cell: (t) => html`<code>${t.address}</code>` },
          { key: 'interface', label: 'Via', cell: (t) => t.interface ?? '—' },
          { key: 'source', label: 'Why probed' },
          { key: 'sent', label: 'Sent', num: true, cell: (t) => count(t.sent) },
          { key: 'received', label: 'Received', num: true, cell: (t) => count(t.received) },
          { key: 'loss', label: 'Loss', num: true, value: (t) => (isUnavailable(t.loss_percent) ? -1 : t.loss_percent), cell: (t) => avail(t.loss_percent, (p) => percent(p, 0)) },
          { key: 'min', label: 'Min', num: true, value: rtt('min_seconds'), cell: (t) => avail(t.rtt, (r) => duration(r.min_seconds)) },
          { key: 'avg', label: 'Avg', num: true, value: rtt('avg_seconds'), cell: (t) => avail(t.rtt, (r) => duration(r.avg_seconds)) },
          { key: 'max', label: 'Max', num: true, value: rtt('max_seconds'), cell: (t) => avail(t.rtt, (r) => duration(r.max_seconds)) },
          { key: 'stddev', label: 'Std dev', num: true, value: rtt('stddev_seconds'), cell: (t) => avail(t.rtt, (r) => duration(r.stddev_seconds)) },
          { key: 'last_reply', label: 'Last reply', cell: (t) => ago(t.last_reply, now) },
          { key: 'last_error', label: 'Last error', cell: (t) => t.last_error ?? '—' },
        ]} />`} />`;
}
