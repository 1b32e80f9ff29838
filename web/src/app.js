// The shell: sign-in, the banner, the navigation and the page of the
// location's hash (#/devices, #/device/<mac>, ...). On a hub (its
// `/health` says so) the pages are the hosts' (#/hosts, #/host/<name>) and
// the agent's own pages, which need the agent's API, are not shown.

import { html } from 'htm/preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, connection, detectMode, mode as modeObs, retry, session, signIn, signOut } from './api.js';
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
import { HostDevice } from './pages/host_device.js';
import { Host, Hosts } from './pages/hosts.js';

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

/** A hub's pages: `#/` is its hosts too. */
const HUB_PAGES = [['hosts', 'Hosts', Hosts]];

function parseHash() {
  const parts = location.hash.replace(/^#\/?/, '').split('/');
  return {
    page: parts[0] ?? '',
    arg: decodeURIComponent(parts.slice(1).join('/')),
    // Each part decoded on its own: a host's device view is
    // #/host/<name>/device/<iface>/<mac>.
    args: parts.slice(1).map((p) => {
      try {
        return decodeURIComponent(p);
      } catch {
        return p;
      }
    }),
  };
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
  const mode = useObservable(modeObs);
  const route = useRoute();
  const main = useRef(null);
  const hub = mode === 'hub';
  useEffect(() => {
    detectMode();
  }, []);
  useEffect(() => {
    // The live stream is the agent's; a hub has none.
    if (s && mode === 'agent') startStream();
    else stopStream();
  }, [s?.key, mode]);
  const pages = hub ? HUB_PAGES : PAGES;
  const detail = hub ? ['host', 'Host', 'hosts'] : ['device', 'Device', 'devices'];
  useEffect(() => {
    const name = pages.find(([p]) => p === route.page)?.[1] ?? (route.page === detail[0] ? detail[1] : '');
    document.title = `${name ? `${name} · ` : ''}netmon${hub ? ' hub' : ''}`;
  }, [route.page, hub]);
  if (!mode) return html`<p class="loading" aria-busy="true">Loading…</p>`;
  if (!s) return html`<${SignIn} hub=${hub} />`;
  let page;
  if (route.page === 'device' && !hub) {
    page = html`<${Device} mac=${route.arg} role=${s.role} />`;
  } else if (route.page === 'host' && hub && route.args[1] === 'device' && route.args.length === 4) {
    const [name, , iface, mac] = route.args;
    page = html`<${HostDevice} key=${route.arg} name=${name} iface=${iface} mac=${mac} />`;
  } else if (route.page === 'host' && hub) {
    page = html`<${Host} name=${route.arg} />`;
  } else if (hub && route.page === '') {
    page = html`<${Hosts} />`;
  } else {
    const found = pages.find(([p]) => p === route.page);
    page = found ? html`<${found[2]} role=${s.role} />` : html`<${NotFound} hub=${hub} />`;
  }
  const current = route.page === detail[0] ? detail[2] : hub && route.page === '' ? 'hosts' : route.page;
  return html`
    <button type="button" class="skip" onClick=${() => main.current?.focus()}>Skip to content</button>
    <header class="top">
      <a class="brand" href="#/">netmon${hub ? ' hub' : ''}</a>
      <nav aria-label="Pages">
        ${pages.map(
          ([p, label]) => html`<a href=${`#/${p}`} aria-current=${p === current ? 'page' : undefined}>${label}</a>`,
        )}
      </nav>
      <div class="session">
        ${hub ? null : html`<${Live} />`}
        <span class="role" title="The key's role">${s.role}</span>
        <button type="button" onClick=${signOut}>Sign out</button>
      </div>
    </header>
    <${Banner} hub=${hub} />
    <main id="main" ref=${main} tabindex="-1">${page}</main>`;
}

function NotFound({ hub }) {
  return html`<h1>No such page</h1><p><a href="#/">Back to the ${hub ? 'hosts' : 'overview'}</a></p>`;
}

/** Whether the live stream is up. */
function Live() {
  const st = useObservable(streamState);
  const text = { live: 'live', connecting: 'connecting…', down: 'stream down' }[st.state];
  return html`<span class=${`live ${st.state}`} title=${st.message ?? 'The live stream'} role="status">${text}</span>`;
}

/** The banner of a refused key or an unreachable agent, with retry. */
function Banner({ hub }) {
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
      <strong>Signed-in key refused.</strong> ${conn.message}. ${hub
        ? 'Sign in again with a valid hub token (netmon-agent hub token add --read-only NAME).'
        : "Sign in again with a valid key (the admin key is in the agent's state directory)."}
      <span class="actions"><button type="button" onClick=${retry}>Retry</button>
      <button type="button" onClick=${signOut}>Sign in again</button></span>
    </div>`;
  }
  return html`<div class="banner warn" role="alert">
    <strong>${hub ? 'Hub' : 'Agent'} unreachable.</strong> ${conn.message}. Retrying in ${left} s.
    <span class="actions"><button type="button" onClick=${retry}>Retry now</button></span>
  </div>`;
}

function SignIn({ hub }) {
  const [key, setKey] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const submit = async (e) => {
    e?.preventDefault();
    if (!key.trim()) return;
    setBusy(true);
    setError(null);
    try {
      if (hub) {
        // Any hub token reads; the hub has no roles to report.
        await api('/api/v1/hub', { key: key.trim(), quiet: true });
        signIn(key.trim(), 'read-only');
      } else {
        const r = await api('/api/v1/stream/ticket', { method: 'POST', key: key.trim(), quiet: true });
        signIn(key.trim(), r.role);
      }
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
      auth: `The ${hub ? 'hub' : 'agent'} refused this ${hub ? 'token' : 'key'} (401). Check it and try again.`,
      limited: `Too many failed sign-ins from this address; try again in ${error.retryAfter ?? 60} s.`,
      down: `Cannot reach the ${hub ? 'hub' : 'agent'}: ${error.message}.`,
    }[error.kind] ?? `Sign-in failed: ${error.message}`;
    message = html`<div class="banner error" role="alert">
      <strong>Sign-in failed.</strong> ${text}
      <span class="actions"><button type="button" onClick=${submit} disabled=${busy}>Retry</button></span>
    </div>`;
  }
  const hint = hub
    ? html`<p class="hint">This is a netmon hub: sign in with its read-only token
        (<code>netmon-agent hub token add --read-only NAME</code> prints one) or a host's token.
        The token stays in this tab (session storage) and is sent in a header only.</p>`
    : html`<p class="hint">A read-only key is enough to look; renaming a device needs the admin key.
        The admin key is the file <code>api-key</code> in the agent's state directory
        (<code>/var/lib/netmon</code>; <code>target/netmon-state</code> under <code>cargo xtask run</code>).
        The key stays in this tab (session storage) and is sent in a header only.</p>`;
  return html`<main class="signin" id="main">
    <h1><span class="brand">netmon</span> ${hub ? 'hub' : 'dashboard'}</h1>
    ${message}
    <form onSubmit=${submit} class="card">
      <label for="key">${hub ? 'Hub token' : 'API key'}</label>
      <input id="key" name="key" type="password" autocomplete="current-password" required autofocus
        value=${key} onInput=${(e) => setKey(e.currentTarget.value)} />
      <button type="submit" disabled=${busy}>${busy ? 'Signing in…' : 'Sign in'}</button>
      ${hint}
    </form>
  </main>`;
}
