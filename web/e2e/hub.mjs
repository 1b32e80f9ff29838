// Drives the dashboard a `netmon-agent hub` serves, in Debian's headless
// Chromium (playwright-core). Run by netmon-agent/tests/e2e_hub_dashboard.rs
// in the hub's namespace while a real agent pushes to it; settings come
// from the environment:
//
//   NETMON_URL          the hub, e.g. http://10.0.0.254:9300
//   NETMON_HUB_TOKEN    the hub's read-only token
//   NETMON_HOST         a host that pushes to the hub
//   NETMON_SCREENSHOTS  where to write the screenshots (hub-*.png)
//   NETMON_PROFILE      an empty directory for Chromium's profile
//   CHROMIUM            the browser (default /usr/bin/chromium)
//
// Also: a wrong token is refused at sign-in. Exits non-zero with the reason on the first check that fails.

import { bitRate, count, percent } from '../src/format.js';
import { WAIT, check, env, launch, result, seriesPixels, shoot as shootAt, watch } from './common.mjs';

const URL = env('NETMON_URL');
const TOKEN = env('NETMON_HUB_TOKEN');
const HOST = env('NETMON_HOST');
const SHOTS = env('NETMON_SCREENSHOTS');

const context = await launch();

const shoot = (page, name) => shootAt(page, SHOTS, `hub-${name}`);

let failed = null;
try {
  const page = context.pages()[0] ?? (await context.newPage());
  const errors = watch(page);
  // Every /api/v1/hosts answer the page gets, the newest last; and the
  // host's flows and top talkers answers.
  let hosts = null;
  let flows = null;
  let top = null;
  page.on('response', async (r) => {
    const path = new globalThis.URL(r.url()).pathname;
    if (!r.ok()) return;
    if (path === '/api/v1/hosts') hosts = await r.json().catch(() => hosts);
    if (path === `/api/v1/hosts/${HOST}/flows`) flows = await r.json().catch(() => flows);
    if (path === `/api/v1/hosts/${HOST}/top`) top = await r.json().catch(() => top);
  });

  // 1. The page, its headers, and the hub's sign-in.
  const response = await page.goto(`${URL}/`);
  const h = response.headers();
  check((h['content-security-policy'] ?? '').includes("script-src 'self'"), 'CSP allows scripts from the origin only');
  check((h['content-security-policy'] ?? '').includes("frame-ancestors 'none'"), 'CSP denies framing');
  check(h['x-content-type-options'] === 'nosniff', 'X-Content-Type-Options: nosniff');
  check(h['x-frame-options'] === 'DENY', 'X-Frame-Options: DENY');
  await page.waitForSelector('#key');
  const label = await page.textContent('label[for=key]');
  check(label.includes('Hub token'), `the sign-in asks for a hub token (${label})`);
  await shoot(page, 'signin');

  // 2. Signed in: the hosts, and only the hub's pages in the navigation.
  await page.fill('#key', TOKEN);
  await page.click('button[type=submit]');
  const row = `tr[data-host="${HOST}"]`;
  await page.waitForSelector(row);
  const nav = await page.$$eval('nav[aria-label=Pages] a', (as) => as.map((a) => a.textContent.trim()));
  check(JSON.stringify(nav) === '["Hosts"]', `only the Hosts page is offered on a hub: ${JSON.stringify(nav)}`);
  check((await page.$('.live')) === null, 'no live-stream indicator on a hub');

  // 3. The row shows the figures of the answer the page got.
  let shown = null;
  let want = null;
  const deadline = Date.now() + WAIT;
  for (;;) {
    const seen = await page.getAttribute(row, 'data-last-seen');
    const hostJson = hosts?.hosts?.find((x) => x.host === HOST);
    if (hostJson && hostJson.lastSeen === seen) {
      want = [
        percent(hostJson.cpuPercent),
        percent(hostJson.memoryPercent),
        percent(hostJson.diskPercent),
        bitRate(hostJson.rxBps),
        bitRate(hostJson.txBps),
        count(hostJson.devices),
      ];
      want.push(String(hostJson.alerts?.firing));
      shown = await page.$$eval(`${row} td`, (tds) => [
        ...tds.slice(3, 9).map((td) => td.textContent.trim()),
        // The alerts column: the firing count of the host's last push.
        String(tds[9]?.querySelector('span')?.dataset.firing),
      ]);
      const state = await page.textContent(`${row} td:nth-child(3)`);
      if (JSON.stringify(shown) === JSON.stringify(want)) {
        check(state.trim() === (hostJson.stale ? 'stale' : 'fresh'), `state ${state} vs stale ${hostJson.stale}`);
        check(!hostJson.stale, 'the host is fresh');
        check(Number.isFinite(hostJson.cpuPercent) && Number.isFinite(hostJson.memoryPercent), 'CPU and memory known');
        check(Number.isInteger(hostJson.alerts?.firing), `the host's push carries its alerts: ${JSON.stringify(hostJson.alerts)}`);
        break;
      }
    }
    check(Date.now() < deadline, `the row shows the API's figures: ${JSON.stringify(shown)} vs ${JSON.stringify(want)}`);
    await page.waitForTimeout(200);
  }
  result('hosts_row', JSON.stringify(shown));
  await shoot(page, 'hosts');

  // 4. The Host page: its summary, its devices and its history chart.
  await page.click(`${row} a`);
  await page.waitForSelector('#host-summary');
  check(new globalThis.URL(page.url()).hash === `#/host/${HOST}`, `the Host page's address (${page.url()})`);
  await page.waitForSelector('#host-devices');
  await page.waitForFunction(() => Number(document.querySelector('#host-history .chart')?.dataset.points) >= 2);
  const points = await page.getAttribute('#host-history .chart', 'data-points');
  result('history_points', points);
  let pixels = -1;
  await page.waitForFunction(() => document.querySelector('#host-history canvas'));
  for (let i = 0; i < 50 && pixels <= 0; i += 1) {
    pixels = await seriesPixels(page, '#host-history');
    if (pixels <= 0) await page.waitForTimeout(200);
  }
  result('history_pixels', pixels);
  check(pixels > 0, 'the history chart drew its series');
  // The host's latest push, page by page: one interface row per interface
  // of the snapshot the hub answers, its filesystems, its alerts card.
  const one = await (await context.request.get(`${URL}/api/v1/hosts/${HOST}`, { headers: { 'X-API-KEY': TOKEN } })).json();
  const ifaces = one.snapshot.network.interfaces.map((i) => i.name).sort();
  await page.waitForSelector('#host-interfaces tr[data-iface]');
  const shownIfaces = (await page.$$eval('#host-interfaces tr[data-iface]', (trs) => trs.map((tr) => tr.dataset.iface))).sort();
  check(JSON.stringify(shownIfaces) === JSON.stringify(ifaces), `the host's interfaces ${JSON.stringify(shownIfaces)} vs ${JSON.stringify(ifaces)}`);
  const disks = await page.$$eval('#host-system tbody tr', (trs) => trs.length);
  check(disks === Math.max(one.snapshot.metrics.disk.length, 1), `one filesystem row a disk (${disks})`);
  check((await page.$('#host-alerts :is(table, p)')) !== null, 'the host\'s alerts card answers');
  check((await page.$('#host-latency :is(table, p)')) !== null, 'the host\'s latency card answers');
  result('host_interfaces', JSON.stringify(shownIfaces));
  // Its flows: one row per flow of the answer the page got, real ones.
  const flowKey = (x) => `${x.interface}/${x.direction}/${x.protocol_number}/${x.src}/${x.dst}`;
  let rows = null;
  let wantRows = null;
  for (const until = Date.now() + WAIT; ; ) {
    rows = (await page.$$eval('#host-flows tr[data-flow]', (trs) => trs.map((tr) => tr.dataset.flow))).sort();
    wantRows = (flows?.flows ?? []).map(flowKey).sort();
    if (rows.length > 0 && JSON.stringify(rows) === JSON.stringify(wantRows)) break;
    check(Date.now() < until, `the flows card shows the answer's flows: ${JSON.stringify(rows)} vs ${JSON.stringify(wantRows)}`);
    await page.waitForTimeout(200);
  }
  check(flows.flows.some((x) => x.bytes > 0 && x.protocol === 'udp'), `real UDP flows: ${JSON.stringify(flows.flows)}`);
  const hint = await page.textContent('#host-flows .hint');
  check(hint.includes(`top ${count(flows.limit)} by rate`), `the card says how many the push lists: ${hint}`);
  result('host_flows', JSON.stringify(rows));
  // Its top talkers, ranked as flows: the answer's series, in its order.
  await page.selectOption('#host-top select[name=family]', 'flow');
  let series = null;
  let wantSeries = null;
  for (const until = Date.now() + WAIT; ; ) {
    series = await page.$$eval('#host-top tr[data-series]', (trs) => trs.map((tr) => tr.dataset.series));
    wantSeries = top?.family === 'flow' ? top.top.map((r) => r.series) : null;
    if (series.length > 0 && JSON.stringify(series) === JSON.stringify(wantSeries)) break;
    check(Date.now() < until, `the top talkers card shows the answer's flows: ${JSON.stringify(series)} vs ${JSON.stringify(wantSeries)}`);
    await page.waitForTimeout(200);
  }
  check(series.every((x) => x.startsWith('flow/')) && top.top[0].value > 0, `flow talkers with bytes: ${JSON.stringify(top.top)}`);
  result('host_top', JSON.stringify(series));
  check((await page.$('#host-not-pushed .hint')) !== null, 'what a push does not carry is said');
  await shoot(page, 'host');

  // 4b. A device's view: from its row's link to its traffic chart, whose
  // points are the hub's history of its series, with real traffic.
  await page.waitForSelector('#host-devices tbody tr[data-mac] a');
  const link = await page.$('#host-devices tbody tr[data-mac] a');
  check(link !== null, 'a device row links to its view');
  const href = await link.getAttribute('href');
  await link.click();
  await page.waitForSelector('#host-device-history');
  const shownHash = new globalThis.URL(page.url()).hash;
  check(shownHash === href && /^#\/host\/[^/]+\/device\/[^/]+\/[^/]+$/.test(href), `the device view's address (${page.url()}, ${href})`);
  const [, , , , iface, mac] = href.split('/').map(decodeURIComponent);
  const devSeries = `device/${iface}/${mac}`;
  const history = await page.evaluate(
    async ([path, token]) => (await fetch(path, { headers: { 'x-api-key': token } })).json(),
    [`/api/v1/hosts/${HOST}/history?series=${encodeURIComponent(devSeries)}&since=1h`, TOKEN],
  );
  const pts = history?.history?.points ?? [];
  const sent = pts.reduce((a, p) => a + (p.values.rx_bytes ?? 0) + (p.values.tx_bytes ?? 0), 0);
  check(history?.history?.series === devSeries && pts.length > 0 && sent > 0, `the device's history on the hub has traffic: ${JSON.stringify(history).slice(0, 400)}`);
  await page.waitForFunction(() => Number(document.querySelector('#host-device-history .chart')?.dataset.points) >= 1);
  const devPoints = Number(await page.getAttribute('#host-device-history .chart', 'data-points'));
  check(devPoints >= 2 && devPoints >= pts.length, `the chart draws the series' ${pts.length} points (and zeros between): ${devPoints}`);
  let devPixels = 0;
  for (const until = Date.now() + WAIT; devPixels <= 0 && Date.now() < until; ) {
    devPixels = await seriesPixels(page, '#host-device-history');
    if (devPixels <= 0) await page.waitForTimeout(200);
  }
  check(devPixels > 0, 'the device chart draws its series');
  result('host_device', JSON.stringify({ series: devSeries, points: pts.length, bytes: sent, chartPoints: devPoints }));
  await shoot(page, 'host-device');

  check(errors.length === 0, `no console errors, got:\n${errors.join('\n')}`);
  result('console_errors', errors.length);

  // 5. A wrong token is refused at sign-in (its 401 is the only console error).
  const wrong = await context.newPage();
  const wrongErrors = watch(wrong);
  await wrong.goto(`${URL}/`);
  await wrong.evaluate(() => sessionStorage.clear());
  await wrong.reload();
  await wrong.fill('#key', 'not-the-token-0123456789abcdef');
  await wrong.click('button[type=submit]');
  await wrong.waitForSelector('[role=alert]');
  const alert = (await wrong.textContent('[role=alert]')).trim().replace(/\s+/g, ' ');
  result('wrong_token_alert', JSON.stringify(alert));
  check(/hub refused this token/.test(alert), 'the sign-in says the hub refused the token');
  check(wrongErrors.every((e) => e.includes('401')), `only the 401 is logged: ${wrongErrors.join('\n')}`);
  await wrong.close();
} catch (e) {
  failed = e;
} finally {
  await context.close();
}
if (failed) {
  console.error(`hub dashboard e2e: ${failed.stack ?? failed}`);
  process.exit(1);
}
console.log('hub dashboard e2e: every check passed');
