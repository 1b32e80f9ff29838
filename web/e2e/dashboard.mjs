// Drives the real dashboard in Debian's headless Chromium (playwright-core,
// no browser download) against a running agent. Run by
// netmon-agent/tests/e2e_dashboard.rs inside the agent's test namespace,
// with the agent's traffic already sent; settings come from the
// environment:
//
//   NETMON_URL          the agent, e.g. http://127.0.0.1:9713
//   NETMON_RO_KEY       a read-only key;  NETMON_ADMIN_KEY: the admin key
//   NETMON_DEVICE_MAC   a device that sent traffic
//   NETMON_SENT_BYTES   at least this many bytes it sent
//   NETMON_INTERVAL_MS  the agent's drain interval
//   NETMON_RENAME       the name to give that device with the admin key
//   NETMON_TMP_PID      a process the test runs from a copy of a binary in /tmp
//   NETMON_SCREENSHOTS  where to write the screenshots
//   NETMON_PROFILE      an empty directory for Chromium's profile
//   CHROMIUM            the browser (default /usr/bin/chromium)
//
// Prints one `result <name> <value>` line per measurement and exits non-zero
// with the reason on the first check that fails.

import { check, env, launch, result, seriesPixels, shoot as shootAt, watch } from './common.mjs';

const URL = env('NETMON_URL');
const RO_KEY = env('NETMON_RO_KEY');
const ADMIN_KEY = env('NETMON_ADMIN_KEY');
const MAC = env('NETMON_DEVICE_MAC');
const SENT = Number(env('NETMON_SENT_BYTES'));
const INTERVAL = Number(env('NETMON_INTERVAL_MS'));
const RENAME = env('NETMON_RENAME');
const TMP_PID = env('NETMON_TMP_PID');
const SHOTS = env('NETMON_SCREENSHOTS');

const context = await launch();

const shoot = (page, name) => shootAt(page, SHOTS, name);

async function signIn(page, key) {
  await page.goto(`${URL}/`);
  await page.fill('#key', key);
  await page.click('button[type=submit]');
}

let failed = null;
try {
  // 1. The page and its headers.
  const page = context.pages()[0] ?? (await context.newPage());
  const errors = watch(page);
  const response = await page.goto(`${URL}/`);
  const h = response.headers();
  result('csp', JSON.stringify(h['content-security-policy']));
  check((h['content-security-policy'] ?? '').includes("script-src 'self'"), 'CSP allows scripts from the origin only');
  check((h['content-security-policy'] ?? '').includes("frame-ancestors 'none'"), 'CSP denies framing');
  check(h['x-content-type-options'] === 'nosniff', 'X-Content-Type-Options: nosniff');
  check(h['x-frame-options'] === 'DENY', 'X-Frame-Options: DENY');
  await page.waitForSelector('#key');
  await shoot(page, 'signin');

  // 2. Sign in with the read-only key; the overview renders.
  await signIn(page, RO_KEY);
  await page.waitForSelector('main[data-ready=overview]');
  check((await page.evaluate(() => sessionStorage.getItem('netmon.key'))) === RO_KEY, 'the key is in sessionStorage');
  check(!page.url().includes(RO_KEY), 'the key is not in the URL');

  // 3. First render of the overview, signed in: a fresh load.
  const t0 = Date.now();
  await page.goto(`${URL}/#/`, { waitUntil: 'commit' });
  await page.reload({ waitUntil: 'commit' });
  await page.waitForSelector('main[data-ready=overview]');
  const wall = Date.now() - t0;
  const mark = await page.evaluate(() => performance.getEntriesByName('netmon-overview-ready')[0]?.startTime);
  result('first_render_ms', Math.round(mark));
  result('first_render_wall_ms', wall);

  // 4. The live rate chart moves within two intervals.
  const chart = '#live-rates .chart';
  await page.waitForSelector(`${chart}[data-points]:not([data-points="0"])`);
  const last = await page.getAttribute(chart, 'data-last');
  const moved0 = Date.now();
  await page.waitForFunction(
    ([sel, was]) => document.querySelector(sel)?.getAttribute('data-last') !== was,
    [chart, last],
    { timeout: 2 * INTERVAL + 2000 },
  );
  result('rate_chart_moved_ms', Date.now() - moved0);
  await page.waitForTimeout(2 * INTERVAL);
  check((await seriesPixels(page, '#live-rates')) > 0, 'the live chart draws its rx/tx lines');
  // The overview's alerts card answers (none firing, or the firing ones).
  await page.waitForSelector('#active-alerts :is(p.ok, ul.alerts)');
  await shoot(page, 'overview');

  // 5. The devices table lists the device with the bytes it sent.
  await page.goto(`${URL}/#/devices`);
  const row = `tr[data-mac="${MAC}"]`;
  await page.waitForSelector(row);
  await page.waitForFunction(
    ([sel, sent]) => {
      const cells = [...document.querySelectorAll(`${sel} [data-bytes]`)].map((c) => Number(c.dataset.bytes));
      return cells.length === 2 && cells[1] >= sent;
    },
    [row, SENT],
  );
  const txText = await page.textContent(`${row} td:nth-child(10)`);
  result('device_tx_shown', JSON.stringify(txText.trim()));
  check(/\d (B|KiB|MiB|GiB)$/.test(txText.trim()), `the tx total is in human units: ${txText}`);
  const groups = await page.locator('tr[data-mac^="ff:ff"], tr[data-mac^="33:33"]').count();
  check(groups === 0, 'group addresses are hidden by default');
  await shoot(page, 'devices');

  // 6. The device's history chart draws points.
  await page.goto(`${URL}/#/device/${MAC}`);
  await page.waitForSelector('#device-history .chart[data-points]');
  const points = Number(await page.getAttribute('#device-history .chart', 'data-points'));
  result('history_points', points);
  check(points > 0, 'the history chart has points');
  check((await seriesPixels(page, '#device-history')) > 0, 'the history chart draws its rx/tx lines');
  check((await page.locator('#label-name').count()) === 0, 'a read-only key gets no rename form');
  await shoot(page, 'device');

  // 7. Every other page, for the pictures (and their console errors).
  for (const [hash, ready] of [
    ['top', 'table'],
    ['flows', 'table'],
    ['interfaces', 'table'],
    ['system', '#containers :is(table, p.unavailable)'],
    ['latency', 'table'],
    ['alerts', '#alert-log table'],
  ]) {
    await page.goto(`${URL}/#/${hash}`);
    await page.waitForSelector(`main ${ready}`);
    await page.waitForTimeout(500);
    await shoot(page, hash);
  }

  // 7b. Security: the process run from /tmp is a finding; every compliance
  // check is a row with the API's result; the package count is the API's.
  const asRo = { headers: { 'X-API-KEY': RO_KEY } };
  await page.goto(`${URL}/#/security`);
  const tmpRow = page.locator('#security-findings tr[data-kind="process_in_tmp"]', { hasText: `pid=${TMP_PID}` });
  await tmpRow.waitFor();
  check((await tmpRow.count()) === 1, `one process_in_tmp row for pid ${TMP_PID}`);
  await page.waitForSelector('#compliance tr[data-check]');
  const compliance = await (await context.request.get(`${URL}/api/v1/compliance`, asRo)).json();
  check(compliance.cis_results.length >= 10, 'the API lists at least seed 004\'s 10 checks');
  check(
    (await page.locator('#compliance tr[data-check]').count()) === compliance.cis_results.length,
    'one compliance row a check',
  );
  for (const c of compliance.cis_results) {
    const status = await page.locator(`#compliance tr[data-check="${c.check_id}"]`).getAttribute('data-status');
    check(status === c.status, `${c.check_id} shows ${c.status} (shows ${status})`);
  }
  const packages = await (await context.request.get(`${URL}/api/v1/packages`, asRo)).json();
  if (packages.inventory.count !== undefined) {
    const shown = (await page.locator('#packages p strong').first().textContent()).replace(/\D/g, '');
    check(Number(shown) === packages.inventory.count, `the package count ${packages.inventory.count} (shows ${shown})`);
  }
  result('compliance_checks', compliance.cis_results.length);
  await shoot(page, 'security');

  // 8. Keyboard: the devices table sorts from the keyboard.
  await page.goto(`${URL}/#/devices`);
  await page.waitForSelector(row);
  await page.focus('th button.sort');
  await page.keyboard.press('Enter');
  const sorted = await page.getAttribute('th:first-child', 'aria-sort');
  check(sorted === 'ascending', `Enter on a column header sorts by it (aria-sort ${sorted})`);

  check(errors.length === 0, `no console errors, got:\n${errors.join('\n')}`);
  result('console_errors', errors.length);

  // 9. A wrong key shows the banner (its 401 is the only console error).
  const wrong = await context.newPage();
  const wrongErrors = watch(wrong);
  await wrong.evaluate(() => sessionStorage.clear()).catch(() => {});
  await signIn(wrong, 'not-the-key-0123456789abcdef');
  await wrong.waitForSelector('[role=alert]');
  const alert = await wrong.textContent('[role=alert]');
  result('wrong_key_banner', JSON.stringify(alert.trim().replace(/\s+/g, ' ')));
  check(/refused/.test(alert), 'the banner says the key was refused');
  check(wrongErrors.every((e) => e.includes('401')), `only the 401 is logged: ${wrongErrors.join('\n')}`);
  await shoot(wrong, 'wrong-key');
  await wrong.close();

  // 10. Rename with the admin key: the table shows the new name.
  const admin = await context.newPage();
  const adminErrors = watch(admin);
  await admin.goto(`${URL}/`);
  await admin.evaluate(() => sessionStorage.clear());
  await signIn(admin, ADMIN_KEY);
  await admin.waitForSelector('main[data-ready=overview]');
  await admin.goto(`${URL}/#/device/${MAC}`);
  await admin.fill('#label-name', RENAME);
  await admin.fill('#label-note', 'renamed by the browser test');
  await admin.click('.label-form button[type=submit]');
  await admin.waitForSelector('.label-form [role=status]:has-text("Saved")');
  await admin.goto(`${URL}/#/devices`);
  await admin.waitForFunction(
    ([sel, name]) => document.querySelector(`${sel} a.name`)?.textContent.includes(name),
    [row, RENAME],
  );
  result('renamed', JSON.stringify(RENAME));
  await shoot(admin, 'devices-renamed');
  check(adminErrors.length === 0, `no console errors as admin, got:\n${adminErrors.join('\n')}`);
} catch (e) {
  failed = e;
} finally {
  await context.close();
}
if (failed) {
  console.error(`dashboard e2e: ${failed.stack ?? failed}`);
  process.exit(1);
}
console.log('dashboard e2e: every check passed');
