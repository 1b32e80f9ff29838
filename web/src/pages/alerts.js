// Alerts: the ones pending, firing or just resolved (every 5 s), the
// silences in force, and the alert log of the last day (firing and
// resolved transitions, kept in the history file).

import { html } from 'htm/preact';
import { useState } from 'preact/hooks';
import { useNow, usePoll } from '../hooks.js';
import { ago, localTime } from '../format.js';
import { Card, Loaded, SortTable } from '../ui.js';

const SEVERITY_RANK = { critical: 0, warning: 1, info: 2 };

/** The labels that tell an alert's entity apart (not its name and severity). */
export function entity(labels) {
  return Object.entries(labels)
    .filter(([k, v]) => k !== 'alertname' && k !== 'severity' && v !== '')
    .map(([k, v]) => `${k}=${v}`)
    .join(' ');
}

export function Alerts() {
  const active = usePoll('/api/v1/alerts', 5000);
  const [range, setRange] = useState('24h');
  const log = usePoll(`/api/v1/alerts/history?from=${range}&limit=1000`, 10000);
  const now = useNow(5000);
  return html`<h1>Alerts</h1>
    <${Card} title="Now" id="alerts-now">
      <${Loaded} poll=${active} render=${(a) => html`
        ${a.enabled ? null : html`<p class="unavailable">Alerts are off (--no-alerts).</p>`}
        <p class="hint">${a.rules} rules in force${a.evaluated ? `, evaluated ${ago(a.evaluated, now)}` : ''}.</p>
        <${SortTable} label="Active alerts" rows=${a.alerts}
          rowKey=${(x) => `${x.name}/${entity(x.labels)}`}
          rowAttrs=${(x) => ({ 'data-alert': x.name, 'data-state': x.state })}
          empty="No alert pending or firing."
          columns=${[
            { key: 'name', label: 'Alert', cell: (x) => html`<strong>${x.name}</strong>` },
            { key: 'severity', label: 'Severity', value: (x) => SEVERITY_RANK[x.severity] ?? 3,
              cell: (x) => html`<span class=${`sev ${x.severity}`}>${x.severity}</span>` },
            { key: 'state', label: 'State', cell: (x) => (x.silenced ? `${x.state} (silenced)` : x.state) },
            { key: 'entity', label: 'Of', value: (x) => entity(x.labels), cell: (x) => html`<code>${entity(x.labels) || '—'}</code>` },
            { key: 'summary', label: 'Summary', value: (x) => x.annotations.summary ?? '', cell: (x) => x.annotations.summary ?? '—' },
            { key: 'since', label: 'Since', value: (x) => Date.parse(x.since), cell: (x) => ago(x.since, now) },
          ]} />
        ${a.silences.length
          ? html`<h3>Silences</h3><ul class="plain">${a.silences.map((s) => html`<li>
              ${s.rule ? html`rule <strong>${s.rule}</strong>` : 'every rule'}${s.mac ? html` of <code>${s.mac}</code>` : ''}
              until ${localTime(s.until)}</li>`)}</ul>`
          : null}`} />
    </${Card}>
    <${Card} title="Log" id="alert-log">
      <div class="controls">
        <label>Last <select value=${range} onChange=${(e) => setRange(e.currentTarget.value)}>
          <option value="1h">hour</option><option value="24h">day</option><option value="7d">week</option>
          <option value="30d">30 days</option>
        </select></label>
      </div>
      <${Loaded} poll=${log} render=${(l) => html`
        ${l.truncated ? html`<p class="hint">The first 1000 transitions of the range.</p>` : null}
        <${SortTable} label="Alert log" rows=${l.entries}
          rowKey=${(x) => `${x.time}/${x.name}/${x.to}/${entity(x.labels)}`}
          initial=${{ key: 'time', desc: true }}
          empty="No alert fired or resolved in this range."
          columns=${[
            { key: 'time', label: 'Time', value: (x) => Date.parse(x.time), cell: (x) => localTime(x.time) },
            { key: 'name', label: 'Alert', cell: (x) => html`<strong>${x.name}</strong>` },
            { key: 'to', label: 'Became', cell: (x) => html`<span class=${`state ${x.to}`}>${x.to}</span>` },
            { key: 'severity', label: 'Severity', value: (x) => SEVERITY_RANK[x.severity] ?? 3 },
            { key: 'entity', label: 'Of', value: (x) => entity(x.labels), cell: (x) => html`<code>${entity(x.labels) || '—'}</code>` },
            { key: 'summary', label: 'Summary', value: (x) => x.annotations.summary ?? '', cell: (x) => x.annotations.summary ?? '—' },
          ]} />`} />
    </${Card}>`;
}
