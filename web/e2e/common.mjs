// What the browser scripts (dashboard.mjs, hub.mjs) share: settings from
// the environment, checks and results, Debian's headless Chromium, console
// errors, screenshots at both widths and a chart's drawn pixels.

import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

/** The environment variable `name`, or `fallback`; throws when neither. */
export function env(name, fallback) {
  const v = process.env[name] ?? fallback;
  if (v === undefined) throw new Error(`${name} is not set`);
  return v;
}

export const WIDTHS = [1280, 390];
/** Longest any single wait takes: the test fails rather than hangs. */
export const WAIT = 30_000;

export function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
}

export function result(name, value) {
  console.log(`result ${name} ${value}`);
}

/** Chromium with the profile in NETMON_PROFILE (CHROMIUM: the browser). */
export async function launch() {
  const context = await chromium.launchPersistentContext(env('NETMON_PROFILE'), {
    executablePath: env('CHROMIUM', '/usr/bin/chromium'),
    headless: true,
    chromiumSandbox: false,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    viewport: { width: WIDTHS[0], height: 900 },
  });
  context.setDefaultTimeout(WAIT);
  return context;
}

/** Console errors and uncaught exceptions of `page`, as text. */
export function watch(page) {
  const errors = [];
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(`console: ${m.text()}`);
  });
  page.on('pageerror', (e) => errors.push(`exception: ${e.message}`));
  return errors;
}

/** Screenshots of `page` at both widths, `<dir>/<name>-<width>.png`. */
export async function shoot(page, dir, name) {
  mkdirSync(dir, { recursive: true });
  for (const width of WIDTHS) {
    await page.setViewportSize({ width, height: width > 600 ? 900 : 844 });
    // Let charts follow the width before the picture.
    await page.waitForTimeout(300);
    await page.screenshot({ path: join(dir, `${name}-${width}.png`), fullPage: true });
  }
  await page.setViewportSize({ width: WIDTHS[0], height: 900 });
}

/** Pixels of the first chart's canvas under `selector` in either series' colour. */
export async function seriesPixels(page, selector) {
  return page.evaluate((sel) => {
    const canvas = document.querySelector(`${sel} canvas`);
    if (!canvas) return -1;
    const css = getComputedStyle(document.documentElement);
    const rgb = (v) => {
      const probe = document.createElement('span');
      probe.style.color = css.getPropertyValue(v).trim();
      document.body.appendChild(probe);
      const m = getComputedStyle(probe).color.match(/\d+/g).map(Number);
      probe.remove();
      return m;
    };
    const colours = [rgb('--rx'), rgb('--tx')];
    const { data } = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
    let n = 0;
    for (let i = 0; i < data.length; i += 4) {
      if (data[i + 3] < 128) continue;
      if (colours.some((c) => Math.abs(c[0] - data[i]) + Math.abs(c[1] - data[i + 1]) + Math.abs(c[2] - data[i + 2]) < 60)) {
        n += 1;
      }
    }
    return n;
  }, selector);
}
