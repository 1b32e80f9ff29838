// The shell: sign-in, the banner, the navigation and the page of the
// location's hash (#/devices, #/device/<mac>, ...).

import { html } from 'htm/preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, connection, retry, session, signIn, signOut } from './api.js';
import { useObservable } from './store.js';
import { startStream, stopStream, streamState } from './stream.js';
import { Overview } from './pages/overview.js';
import { Devices } from './pages/devices.js';
import { Device } from './pages/device.js';
import { Top } from './pages/top.js';
import { Flows } from './pages/flows.js';
import { Interfaces } from './pages/interfaces.js';
import { System } from './pages/system.js';
import { Latency } from './pages/latency.js';
import { Alerts } from './pages/alerts.js';
import { Security } from './pages/security.js';

const PAGES = [
  ['', 'Overview', Overview],
  ['devices', 'Devices', Devices],
  ['top', 'Top talkers', Top],
  ['flows', 'Flows', Flows],
  ['interfaces', 'Interfaces', Interfaces],
  ['system', 'System', System],
  ['latency', 'Latency', Latency],
  ['alerts', 'Alerts', Alerts],
  ['security', 'Security', Security],
];

function parseHash() {
  const parts = location.hash.replace(/^#\/?/, '').split('/');
  return { page: parts[0] ?? '', arg: decodeURIComponent(parts.slice(1).join('/')) };
}

function useRoute() {
  const [route, setRoute] = useState(parseHash());
  useEffect(() => {
    const on = () => setRoute(parseHash());
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  return route;
}

export function App() {
  const s = useObservable(session);
  const route = useRoute();
  const main = useRef(null);
  useEffect(() => {
    if (s) startStream();
    else stopStream();
  }, [s?.key]);
  useEffect(() => {
    const name = PAGES.find(([p]) => p === route.page)?.[1] ?? (route.page === 'device' ? 'Device' : '');
    document.title = name ? `${name} · netmon` : 'netmon';
  }, [route.page]);
  if (!s) return html`<${SignIn} />`;
  let page;
  if (route.page === 'device') {
    page = html`<${Device} mac=${route.arg} role=${s.role} />`;
  } else {
    const found = PAGES.find(([p]) => p === route.page);
    page = found ? html`<${found[2]} role=${s.role} />` : html`<${NotFound} />`;
  }
  const current = route.page === 'device' ? 'devices' : route.page;
  return html`
    <button type="button" class="skip" onClick=${() => main.current?.focus()}>Skip to content</button>
    <header class="top">
      <a class="brand" href="#/">netmon</a>
      <nav aria-label="Pages">
        ${PAGES.map(
          ([p, label]) => html`<a href=${`#/${p}`} aria-current=${p === current ? 'page' : undefined}>${label}</a>`,
        )}
      </nav>
      <div class="session">
        <${Live} />
        <span class="role" title="The key's role">${s.role}</span>
        <button type="button" onClick=${signOut}>Sign out</button>
      </div>
    </header>
    <${Banner} />
    <main id="main" ref=${main} tabindex="-1">${page}</main>`;
}

function NotFound() {
  return html`<h1>No such page</h1><p><a href="#/">Back to the overview</a></p>`;
}

/** Whether the live stream is up. */
function Live() {
  const st = useObservable(streamState);
  const text = { live: 'live', connecting: 'connecting…', down: 'stream down' }[st.state];
  return html`<span class=${`live ${st.state}`} title=${st.message ?? 'The live stream'} role="status">${text}</span>`;
}

/** The banner of a refused key or an unreachable agent, with retry. */
function Banner() {
  const conn = useObservable(connection);
  const [left, setLeft] = useState(5);
  useEffect(() => {
    if (conn.state !== 'down') return undefined;
    setLeft(5);
    const t = setInterval(() => {
      setLeft((n) => {
        if (n <= 1) {
          retry();
          return 5;
        }
        return n - 1;
      });
    }, 1000);
    return () => clearInterval(t);
  }, [conn.state, conn.epoch]);
  if (conn.state === 'ok') return null;
  if (conn.state === 'auth') {
    return html`<div class="banner error" role="alert">
      <strong>Signed-in key refused.</strong> ${conn.message}. Sign in again with a valid key (the
      admin key is in the agent's state directory).
      <span class="actions"><button type="button" onClick=${retry}>Retry</button>
      <button type="button" onClick=${signOut}>Sign in again</button></span>
    </div>`;
  }
  return html`<div class="banner warn" role="alert">
    <strong>Agent unreachable.</strong> ${conn.message}. Retrying in ${left} s.
    <span class="actions"><button type="button" onClick=${retry}>Retry now</button></span>
  </div>`;
}

function SignIn() {
  const [key, setKey] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const submit = async (e) => {
    e?.preventDefault();
    if (!key.trim()) return;
    setBusy(true);
    setError(null);
    try {
      const r = await api('/api/v1/stream/ticket', { method: 'POST', key: key.trim(), quiet: true });
      signIn(key.trim(), r.role);
      retry();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  let message = null;
  if (error) {
    const text = {
      auth: 'The agent refused this key (401). Check it and try again.',
      limited: `Too many failed sign-ins from this address; try again in ${error.retryAfter ?? 60} s.`,
      down: `Cannot reach the agent: ${error.message}.`,
    }[error.kind] ?? `Sign-in failed: ${error.message}`;
    message = html`<div class="banner error" role="alert">
      <strong>Sign-in failed.</strong> ${text}
      <span class="actions"><button type="button" onClick=${submit} disabled=${busy}>Retry</button></span>
    </div>`;
  }
  return html`<main class="signin" id="main">
    <h1><span class="brand">netmon</span> dashboard</h1>
    ${message}
    <form onSubmit=${submit} class="card">
      <label for="key">API key</label>
      <input id="key" name="key" type="password" autocomplete="current-password" required autofocus
        value=${key} onInput=${(e) => setKey(e.currentTarget.value)} />
      <button type="submit" disabled=${busy}>${busy ? 'Signing in…' : 'Sign in'}</button>
      <p class="hint">A read-only key is enough to look; renaming a device needs the admin key.
        The admin key is the file <code>api-key</code> in the agent's state directory
        (<code>/var/lib/netmon</code>; <code>target/netmon-state</code> under <code>cargo xtask run</code>).
        The key stays in this tab (session storage) and is sent in a header only.</p>
    </form>
  </main>`;
}
