// Security: the security collector's findings, the compliance checks with
// their score, and the package inventory's recent changes. Each card is
// its collector's view; a collector turned off says so in its card.

import { html } from 'htm/preact';
import { usePoll, useNow } from '../hooks.js';
import { ago, count, localTime } from '../format.js';
import { Card, Loaded, Stat, SortTable } from '../ui.js';

const SEVERITY_RANK = { critical: 0, warning: 1, info: 2 };
const STATUS_RANK = { FAIL: 0, PASS: 1, NOT_APPLICABLE: 2 };
const COMMON = new Set(['kind', 'severity', 'evidence', 'first_seen', 'last_seen']);

/** A finding's subject: its fields beyond the ones every finding has. */
export function subject(f) {
  return Object.entries(f)
    .filter(([k, v]) => !COMMON.has(k) && v !== null && v !== '')
    .map(([k, v]) => `${k}=${Array.isArray(v) ? v.join(',') : v}`)
    .join(' ');
}

export function Security() {
  const now = useNow(5000);
  return html`<h1>Security</h1>
    <${Findings} now=${now} />
    <${Compliance} now=${now} />
    <${Packages} />`;
}

function Findings({ now }) {
  const poll = usePoll('/api/v1/security', 5000);
  return html`<${Card} title="Findings" id="security-findings">
    <${Loaded} poll=${poll} render=${(r) => html`
      <p class="hint">${count(r.processes)} processes looked at${r.unreadable
        ? `, ${count(r.unreadable)} unreadable (another user's, without CAP_SYS_PTRACE)` : ''}${r.findings_omitted
        ? `; ${count(r.findings_omitted)} more findings not listed (--security-max-findings)` : ''}.</p>
      <${SortTable} label="Security findings" rows=${r.findings}
        rowKey=${(f) => `${f.kind}/${subject(f)}`}
        rowAttrs=${(f) => ({ 'data-kind': f.kind })}
        empty="No finding: nothing suspicious seen."
        columns=${[
          { key: 'severity', label: 'Severity', value: (f) => SEVERITY_RANK[f.severity] ?? 3,
            cell: (f) => html`<span class=${`sev ${f.severity}`}>${f.severity}</span>` },
          { key: 'kind', label: 'Kind', cell: (f) => html`<strong>${f.kind.replaceAll('_', ' ')}</strong>` },
          { key: 'subject', label: 'Of', value: subject, cell: (f) => html`<code>${subject(f) || '—'}</code>` },
          { key: 'evidence', label: 'Evidence' },
          { key: 'first_seen', label: 'First seen', value: (f) => Date.parse(f.first_seen), cell: (f) => ago(f.first_seen, now) },
          { key: 'last_seen', label: 'Last seen', value: (f) => Date.parse(f.last_seen), cell: (f) => ago(f.last_seen, now) },
        ]} />`} />
  </${Card}>`;
}

function Compliance({ now }) {
  const poll = usePoll('/api/v1/compliance', 30000);
  return html`<${Card} title="Compliance (CIS checks)" id="compliance">
    <${Loaded} poll=${poll} render=${(r) => html`
      <div class="stats">
        <${Stat} label="score" value=${`${r.score.percent}%`}
          title="Checks passed of all checks, as seed 004 scores them" />
        <${Stat} label="passed" value=${r.score.passed} />
        <${Stat} label="failed" value=${r.score.failed} />
        <${Stat} label="not applicable" value=${r.score.not_applicable} />
      </div>
      <p class="hint">Checked ${ago(r.collection.finished, now)} (every --compliance-interval);${' '}
        ${r.score.percent_applicable === null ? 'no check applies here'
          : `${r.score.percent_applicable}% of the checks that apply`}.</p>
      <${SortTable} label="Compliance checks" rows=${r.cis_results} rowKey=${(c) => c.check_id}
        rowAttrs=${(c) => ({ 'data-check': c.check_id, 'data-status': c.status })}
        initial=${{ key: 'status', desc: false }}
        columns=${[
          { key: 'status', label: 'Result', value: (c) => STATUS_RANK[c.status] ?? 3,
            cell: (c) => html`<span class=${`check ${c.status.toLowerCase()}`}>${c.status.replace('_', ' ')}</span>` },
          { key: 'check_id', label: 'Check', cell: (c) => html`<code>${c.check_id}</code>` },
          { key: 'check_name', label: 'Name' },
          { key: 'evidence', label: 'Evidence', cell: (c) => c.unavailable ? `unavailable: ${c.unavailable}` : c.evidence },
          { key: 'remediation', label: 'Remediation', cell: (c) => (c.status === 'FAIL' ? c.remediation : '—') },
          { key: 'since', label: 'Since', value: (c) => Date.parse(c.since), cell: (c) => localTime(c.since) },
        ]} />`} />
  </${Card}>`;
}

function Packages() {
  const poll = usePoll('/api/v1/packages', 60000);
  return html`<${Card} title="Packages" id="packages">
    <${Loaded} poll=${poll} render=${(r) => {
      const inv = r.inventory;
      if (inv.unavailable) return html`<p class="unavailable">unavailable: ${inv.unavailable}</p>`;
      return html`<p><strong>${count(inv.count)}</strong> packages in <code>${r.database}</code>, read${' '}
          ${localTime(inv.read_at)}${r.baseline ? `; changes since ${localTime(r.baseline)}` : ''}.</p>
        ${inv.problems.length ? html`<p class="problem">${inv.problems.join('; ')}</p>` : null}
        <${SortTable} label="Package changes" rows=${r.changes}
          rowKey=${(c) => `${c.at}/${c.name}/${c.architecture}/${c.kind}`}
          initial=${{ key: 'at', desc: true }}
          empty="No package installed, removed or upgraded since the agent started."
          columns=${[
            { key: 'at', label: 'When', value: (c) => Date.parse(c.at), cell: (c) => localTime(c.at) },
            { key: 'kind', label: 'Change' },
            { key: 'name', label: 'Package', cell: (c) => html`<code>${c.name}</code>` },
            { key: 'architecture', label: 'Arch' },
            { key: 'previous_version', label: 'From', cell: (c) => c.previous_version ?? '—' },
            { key: 'version', label: 'To', cell: (c) => c.version ?? '—' },
          ]} />`;
    }} />
  </${Card}>`;
}
