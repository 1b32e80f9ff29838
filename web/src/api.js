// Talking to the agent: the key (kept in sessionStorage, sent in the
// X-API-KEY header, never in a URL), JSON requests, and the connection's
// state that the banner shows.

import { observable } from './store.js';

const KEY = 'netmon.key';
const ROLE = 'netmon.role';

/** The signed-in key and its role ("admin" or "read-only"), or null. */
export const session = observable(readSession());

function readSession() {
  try {
    const key = sessionStorage.getItem(KEY);
    return key ? { key, role: sessionStorage.getItem(ROLE) || 'read-only' } : null;
  } catch {
    return null;
  }
}

export function signIn(key, role) {
  sessionStorage.setItem(KEY, key);
  sessionStorage.setItem(ROLE, role);
  session.set({ key, role });
}

export function signOut() {
  sessionStorage.removeItem(KEY);
  sessionStorage.removeItem(ROLE);
  session.set(null);
  connection.set({ state: 'ok', epoch: connection.get().epoch + 1 });
}

/**
 * Whom the page talks to: null until known, then `agent` or `hub` (a
 * `netmon-agent hub`, whose `/health` says `"hub": true`).
 */
export const mode = observable(null);

/** Asks `/health` (no key) whether this is a hub; an agent if unsure. */
export async function detectMode() {
  try {
    const res = await fetch('/health', { cache: 'no-store', credentials: 'omit' });
    const body = await res.json();
    mode.set(body?.hub === true ? 'hub' : 'agent');
  } catch {
    mode.set('agent');
  }
}

/**
 * The connection to the agent: `ok`, `auth` (the key was refused), `down`
 * (no answer). `epoch` grows on every retry, so views fetch again.
 */
export const connection = observable({ state: 'ok', epoch: 0 });

export function retry() {
  connection.set((c) => ({ state: 'ok', epoch: c.epoch + 1 }));
}

function setState(state, message) {
  const c = connection.get();
  if (c.state !== state || c.message !== message) connection.set({ ...c, state, message });
}

/** A failed request: `kind` is auth, limited, unavailable, down or bad. */
export class ApiError extends Error {
  constructor(kind, status, message, retryAfter) {
    super(message);
    this.kind = kind;
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

/**
 * `fetch`es `path` with the key and returns the JSON body. Throws an
 * ApiError; a refused key or an unreachable agent also sets `connection`,
 * a success clears it.
 */
export async function api(path, { method = 'GET', body, key, quiet } = {}) {
  const headers = { Accept: 'application/json' };
  const k = key ?? session.get()?.key;
  if (k) headers['X-API-KEY'] = k;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
      credentials: 'omit',
      referrerPolicy: 'no-referrer',
    });
  } catch (e) {
    const err = new ApiError('down', 0, `cannot reach the ${mode.get() === 'hub' ? 'hub' : 'agent'} at ${location.host} (${e.message})`);
    if (!quiet) setState('down', err.message);
    throw err;
  }
  let json = null;
  try {
    json = await res.json();
  } catch {
    json = null;
  }
  if (res.ok) {
    if (!quiet && connection.get().state === 'down') setState('ok');
    return json;
  }
  const message = json?.error?.message ?? `${res.status} ${res.statusText}`;
  const after = Number(res.headers.get('retry-after')) || undefined;
  let err;
  if (res.status === 401) {
    err = new ApiError('auth', 401, `the ${mode.get() === 'hub' ? 'hub' : 'agent'} refused the key: ${message}`);
    if (!quiet) setState('auth', err.message);
  } else if (res.status === 429) {
    err = new ApiError('limited', 429, `${message}`, after);
    if (!quiet) setState('auth', `too many failed sign-ins from this address: ${message}`);
  } else if (res.status === 503) {
    err = new ApiError('unavailable', 503, message, after);
  } else {
    err = new ApiError('bad', res.status, message);
  }
  throw err;
}

/** `/api/v1` path of a hub's host. */
export function hostPath(name) {
  return `/api/v1/hosts/${encodeURIComponent(name)}`;
}

/** `/api/v1` path of a device (`mac` as the API lists it). */
export function devicePath(mac) {
  return `/api/v1/devices/${encodeURIComponent(mac)}`;
}
