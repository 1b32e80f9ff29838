// Bundles the dashboard with esbuild into the directory given with
// --outdir: index.html, content-hashed assets (each with a .gz beside it)
// and manifest.tsv (url, file, MIME type a line), which
// netmon-agent/build_web.rs turns into the table of embedded files. Prints
// the JavaScript's size and fails above the budget.
//
//   node build.mjs --outdir DIR
//
// No network: everything comes from node_modules (`npm ci` first).

import { build } from 'esbuild';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync, readdirSync } from 'node:fs';
import { basename, dirname, extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync, constants } from 'node:zlib';

/** Most JavaScript, gzipped, the dashboard may ship (issue 15). */
const JS_BUDGET_GZIP = 150_000;

const here = dirname(fileURLToPath(import.meta.url));
const at = process.argv.indexOf('--outdir');
if (at < 0 || !process.argv[at + 1]) {
  console.error('usage: node build.mjs --outdir DIR');
  process.exit(2);
}
const outdir = process.argv[at + 1];
const assets = join(outdir, 'assets');
rmSync(outdir, { recursive: true, force: true });
mkdirSync(assets, { recursive: true });

const result = await build({
  entryPoints: [join(here, 'src/main.js')],
  bundle: true,
  minify: true,
  format: 'esm',
  target: ['es2020', 'chrome100', 'firefox100', 'safari15'],
  outdir: assets,
  entryNames: '[name]-[hash]',
  assetNames: '[name]-[hash]',
  legalComments: 'eof',
  metafile: true,
  logLevel: 'warning',
  // JSX is not used: views are htm tagged templates.
});

const MIME = {
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.html': 'text/html; charset=utf-8',
};

function hashed(name, bytes) {
  const h = createHash('sha256').update(bytes).digest('hex').slice(0, 12);
  const ext = extname(name);
  return `${basename(name, ext)}-${h}${ext}`;
}

// The icon is copied under a hashed name like the bundles.
const icon = readFileSync(join(here, 'src/favicon.svg'));
const iconName = hashed('favicon.svg', icon);
writeFileSync(join(assets, iconName), icon);

const files = readdirSync(assets).filter((f) => !f.endsWith('.gz'));
const js = files.filter((f) => f.endsWith('.js'));
const css = files.filter((f) => f.endsWith('.css'));
if (js.length !== 1 || css.length !== 1) {
  console.error(`expected one script and one style sheet, got ${files.join(', ')}`);
  process.exit(1);
}

const html = readFileSync(join(here, 'src/index.html'), 'utf8')
  .replaceAll('%SCRIPT%', `/assets/${js[0]}`)
  .replaceAll('%STYLE%', `/assets/${css[0]}`)
  .replaceAll('%ICON%', `/assets/${iconName}`);
if (/<script(?![^>]*\bsrc=)/.test(html) || /\son[a-z]+=/.test(html)) {
  console.error('index.html must hold no inline script (the CSP forbids it)');
  process.exit(1);
}
writeFileSync(join(outdir, 'index.html'), html);

const manifest = [];
let jsRaw = 0;
let jsGzip = 0;
for (const [dir, name, url] of [
  [outdir, 'index.html', '/'],
  ...files.map((f) => [assets, f, `/assets/${f}`]),
]) {
  const path = join(dir, name);
  const body = readFileSync(path);
  const gz = gzipSync(body, { level: constants.Z_BEST_COMPRESSION });
  writeFileSync(`${path}.gz`, gz);
  manifest.push({
    url,
    file: join(dir === outdir ? '' : 'assets', name),
    mime: MIME[extname(name)] ?? 'application/octet-stream',
    bytes: body.length,
    gzip_bytes: gz.length,
  });
  if (name.endsWith('.js')) {
    jsRaw += body.length;
    jsGzip += gz.length;
  }
}
writeFileSync(
  join(outdir, 'manifest.tsv'),
  manifest.map((m) => `${m.url}\t${m.file}\t${m.mime}\n`).join(''),
);

const kb = (n) => `${(n / 1000).toFixed(1)} kB`;
console.log(
  `dashboard: JavaScript ${kb(jsRaw)} minified, ${kb(jsGzip)} gzipped ` +
    `(budget ${kb(JS_BUDGET_GZIP)} gzipped); ${manifest.length} files in ${outdir}`,
);
if (jsGzip > JS_BUDGET_GZIP) {
  console.error(`dashboard: the JavaScript is over its budget: ${kb(jsGzip)} > ${kb(JS_BUDGET_GZIP)}`);
  process.exit(1);
}
void result;
