// The live stream (/api/v1/stream, Server-Sent Events). EventSource cannot
// send headers, so each connection first trades the key for a short-lived,
// single-use ticket (POST /api/v1/stream/ticket) and passes that in the
// URL; the key itself never goes there. A dropped stream is reopened with a
// new ticket after a growing pause. The last minutes of each interface's
// rates are kept here, so the overview's charts survive page changes; at
// the first event they are filled in from the history (raw samples of the
// window), so a fresh page starts with the last minutes drawn.

import { api, connection } from './api.js';
import { toRates } from './series.js';
import { observable } from './store.js';

/** Seconds of rates kept per interface. */
export const WINDOW_SECONDS = 300;
const MAX_POINTS = 1200;

/** The newest summary, or null. */
export const latest = observable(null);
/** Per interface: { t: [s], rx: [bit/s], tx: [bit/s] } over the window. */
export const rates = observable(new Map());
/** `live`, `connecting` or `down` (with why). */
export const streamState = observable({ state: 'connecting' });

let source = null;
let timer = null;
let failures = 0;
let running = false;
let backfilled = false;

export function startStream() {
  if (running) return;
  running = true;
  failures = 0;
  backfilled = false;
  open();
}

export function stopStream() {
  running = false;
  clearTimeout(timer);
  source?.close();
  source = null;
  latest.set(null);
  rates.set(new Map());
}

async function open() {
  if (!running) return;
  streamState.set({ state: 'connecting' });
  let ticket;
  try {
    ticket = (await api('/api/v1/stream/ticket', { method: 'POST' })).ticket;
  } catch (e) {
    return again(e.message);
  }
  if (!running) return;
  const es = new EventSource(`/api/v1/stream?ticket=${encodeURIComponent(ticket)}`);
  source = es;
  es.addEventListener('open', () => {
    failures = 0;
    streamState.set({ state: 'live' });
  });
  es.addEventListener('interval', (ev) => {
    try {
      add(JSON.parse(ev.data));
    } catch {
      /* a malformed event is skipped */
    }
  });
  // A ticket is good for one connection: EventSource's own reconnection
  // would present it again, so every error closes and starts over.
  es.addEventListener('error', () => {
    es.close();
    if (source === es) again('the stream was interrupted');
  });
}

function again(why) {
  source = null;
  if (!running) return;
  failures += 1;
  const pause = Math.min(15, 2 ** Math.min(failures - 1, 4));
  streamState.set({ state: 'down', message: `${why}; reconnecting in ${pause} s` });
  clearTimeout(timer);
  timer = setTimeout(open, pause * 1000);
}

// A retry (the banner's button) reconnects at once.
let epoch = connection.get().epoch;
connection.subscribe((c) => {
  if (c.epoch !== epoch && running && !source) {
    epoch = c.epoch;
    clearTimeout(timer);
    failures = 0;
    open();
  }
  epoch = c.epoch;
});

/** The window's history of each interface, before what the stream brought. */
async function backfill(names) {
  let stored;
  try {
    stored = new Set((await api('/api/v1/series?family=interface', { quiet: true })).series);
  } catch {
    return; // no history: the charts start empty
  }
  for (const name of names) {
    if (!stored.has(`interface/${name}`)) continue;
    let h;
    try {
      h = await api(`/api/v1/history?series=${encodeURIComponent(`interface/${name}`)}&from=${WINDOW_SECONDS}s`, { quiet: true });
    } catch {
      continue;
    }
    const [t, rx, tx] = toRates(h);
    const now = rates.get().get(name);
    if (!now) continue;
    const before = t.findIndex((x) => x >= now.t[0]);
    const keep = before < 0 ? t.length : before;
    const next = new Map(rates.get());
    next.set(name, {
      t: [...t.slice(0, keep), ...now.t],
      rx: [...rx.slice(0, keep), ...now.rx],
      tx: [...tx.slice(0, keep), ...now.tx],
    });
    rates.set(next);
  }
}

function add(summary) {
  latest.set(summary);
  if (!backfilled) {
    backfilled = true;
    backfill((summary.interfaces ?? []).map((i) => i.name));
  }
  const t = Date.parse(summary.time) / 1000;
  if (!Number.isFinite(t)) return;
  const next = new Map();
  for (const i of summary.interfaces ?? []) {
    const old = rates.get().get(i.name) ?? { t: [], rx: [], tx: [] };
    let start = 0;
    while (start < old.t.length && (old.t[start] < t - WINDOW_SECONDS || old.t.length - start >= MAX_POINTS)) {
      start += 1;
    }
    next.set(i.name, {
      t: [...old.t.slice(start), t],
      rx: [...old.rx.slice(start), i.rx.bits_per_second],
      tx: [...old.tx.slice(start), i.tx.bits_per_second],
    });
  }
  rates.set(next);
}
