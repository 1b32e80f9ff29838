// Small shared pieces of the pages.

import { html } from 'htm/preact';
import { useState } from 'preact/hooks';

/** Why a figure is missing: a 503 says the agent lacks it; the rest failed. */
export function Problem({ error }) {
  if (!error) return null;
  if (error.kind === 'unavailable') {
    return html`<p class="unavailable">unavailable: ${error.message}</p>`;
  }
  if (error.kind === 'auth' || error.kind === 'down') return null; // the banner says it
  return html`<p class="problem" role="status">${error.message}</p>`;
}

/** A page's data: its problem if it has none yet, else `render(data)`. */
export function Loaded({ poll, render }) {
  if (poll.data) {
    return html`${poll.error ? html`<${Problem} error=${poll.error} />` : null}${render(poll.data)}`;
  }
  if (poll.error) return html`<${Problem} error=${poll.error} />`;
  return html`<p class="loading" aria-busy="true">Loading…</p>`;
}

export function Card({ title, children, class: cls = '', ...rest }) {
  return html`<section class=${`card ${cls}`} ...${rest}>
    ${title ? html`<h2>${title}</h2>` : null}${children}
  </section>`;
}

/** A figure with its label. */
export function Stat({ label, value, title }) {
  return html`<div class="stat" title=${title}>
    <span class="stat-value">${value}</span><span class="stat-label">${label}</span>
  </div>`;
}

/** A bar for a ratio 0..1. */
export function Meter({ ratio, label }) {
  const r = Number.isFinite(ratio) ? Math.min(Math.max(ratio, 0), 1) : 0;
  const level = r >= 0.9 ? 'bad' : r >= 0.75 ? 'warn' : 'ok';
  return html`<span class=${`meter ${level}`} role="meter" aria-label=${label}
    aria-valuemin="0" aria-valuemax="100" aria-valuenow=${Math.round(r * 100)}>
    <span class="meter-fill" style=${{ width: `${(r * 100).toFixed(1)}%` }}></span>
  </span>`;
}

/**
 * A table sortable by its columns. `columns`: [{ key, label, value(row) for
 * sorting, cell(row) to show, num }]; `rowKey(row)`; `rowAttrs(row)`.
 */
export function SortTable({ columns, rows, rowKey, rowAttrs, initial, label, empty }) {
  const [sort, setSort] = useState(initial ?? { key: columns[0].key, desc: false });
  const col = columns.find((c) => c.key === sort.key) ?? columns[0];
  const value = col.value ?? ((r) => r[col.key]);
  const sorted = [...rows].sort((a, b) => {
    const x = value(a);
    const y = value(b);
    const c = typeof x === 'number' && typeof y === 'number'
      ? x - y
      : String(x ?? '').localeCompare(String(y ?? ''), 'en', { numeric: true });
    return sort.desc ? -c : c;
  });
  const toggle = (key, num) =>
    setSort((s) => (s.key === key ? { key, desc: !s.desc } : { key, desc: !!num }));
  return html`<div class="table-wrap" tabindex="0" role="region" aria-label=${label}>
    <table>
      <thead><tr>
        ${columns.map(
          (c) => html`<th scope="col" class=${c.num ? 'num' : ''}
            aria-sort=${sort.key === c.key ? (sort.desc ? 'descending' : 'ascending') : 'none'}>
            <button type="button" class="sort" onClick=${() => toggle(c.key, c.num)}>
              ${c.label}<span class="arrow" aria-hidden="true">${sort.key === c.key ? (sort.desc ? '▼' : '▲') : ''}</span>
            </button></th>`,
        )}
      </tr></thead>
      <tbody>
        ${sorted.length === 0
          ? html`<tr><td colspan=${columns.length} class="empty">${empty ?? 'Nothing to show.'}</td></tr>`
          : sorted.map(
              (r) => html`<tr key=${rowKey(r)} ...${rowAttrs ? rowAttrs(r) : {}}>
                ${columns.map((c) => html`<td class=${c.num ? 'num' : ''}>${c.cell ? c.cell(r) : r[c.key]}</td>`)}
              </tr>`,
            )}
      </tbody>
    </table>
  </div>`;
}

/** The name a device is shown by: its label, else its hostname. */
export function deviceName(d) {
  return d?.name || d?.hostname || '';
}

export function deviceHref(mac) {
  return `#/device/${mac}`;
}
