// Drives the Sluice admin dashboard (GET /) in Debian's Chromium through playwright-core and checks
// that a moving pipeline shows its latency, sinks, dead letters by reason and the host, and can be
// paused and resumed from the page.
//
//   node tests/browser/dashboard.mjs <base-url> <pipeline-name> [screenshot.png]
//
// The base URL may carry ?token=... (the admin token; the page keeps it). Prints one line of JSON
// on success and exits 0; prints what failed to stderr and exits 1 otherwise (2 for bad usage).
// scripts/browser-tools.sh installs Chromium and playwright-core.
import { chromium } from 'playwright-core';

const OVERALL_MS = 60_000;
const [baseArg, name, screenshot] = process.argv.slice(2);
if (!baseArg || !name) {
  console.error('usage: node tests/browser/dashboard.mjs <base-url> <pipeline-name> [screenshot.png]');
  process.exit(2);
}

// <base-url>/ with its query kept: http://h:9477?token=x -> http://h:9477/?token=x.
const pageUrl = new URL(baseArg);
if (!pageUrl.pathname.endsWith('/')) pageUrl.pathname += '/';
const shownUrl = new URL(pageUrl);
if (shownUrl.searchParams.has('token')) shownUrl.searchParams.set('token', '***');

const started = Date.now();
const summary = { pipeline: name, url: shownUrl.toString() };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let browser;
let page;
let step = 'launch';
const pageErrors = [];

class Failure extends Error {}
const fail = (msg) => { throw new Failure(msg); };

let finishing = false;
async function finish(code, message) {
  if (finishing) return;
  finishing = true;
  if (message) console.error(`dashboard: FAILED at step "${step}": ${message}`);
  if (code !== 0 && page && screenshot) {
    const path = screenshot.replace(/(\.png)?$/i, '-failure.png');
    await page.screenshot({ path, fullPage: true, timeout: 5_000 })
      .then(() => console.error(`dashboard: page at the failure saved to ${path}`), () => {});
  }
  if (code !== 0 && pageErrors.length) console.error('dashboard: page errors:\n  ' + pageErrors.join('\n  '));
  await browser?.close().catch(() => {});
  process.exit(code);
}

const overall = setTimeout(() => finish(1, `overall timeout of ${OVERALL_MS / 1000} s`), OVERALL_MS);

const q = (s) => '"' + s.replace(/["\\]/g, '\\$&') + '"';
const rowSel = `[data-pipeline=${q(name)}]`;
const field = (f) => page.locator(`${rowSel} [data-field="${f}"]`).first();

async function text(f) {
  const t = await field(f).textContent({ timeout: 5_000 }).catch((e) => fail(`no [data-field="${f}"] in the row: ${e.message}`));
  return (t ?? '').trim();
}
async function total() {
  const t = await text('received-total');
  if (!/^\d+$/.test(t)) fail(`received-total is not an integer: ${JSON.stringify(t)}`);
  return Number(t);
}
async function waitUntil(what, ms, check) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    last = await check();
    if (last === true) return;
    if (Date.now() > deadline) fail(`timed out after ${ms / 1000} s waiting until ${what} (last seen: ${last})`);
    await sleep(250);
  }
}
const stateIs = (want) => async () => { const s = await text('state'); return s === want || `state ${s}`; };
async function click(action) {
  await page.locator(`${rowSel} [data-action="${action}"]`).first().click({ timeout: 10_000 })
    .catch((e) => fail(`could not click ${action}: ${e.message.split('\n')[0]}`));
}

async function main() {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  }).catch((e) => fail(`could not launch Chromium: ${e.message.split('\n')[0]}`));
  page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') pageErrors.push(m.text()); });
  page.on('dialog', (d) => {
    pageErrors.push(`dialog: ${d.message()}`);
    d.dismiss().catch(() => {});
    finish(1, `the page asked for input (${d.type()}: ${d.message()}); a wrong or missing ?token= in the base URL?`);
  });

  step = 'a: open the dashboard';
  const res = await page.goto(pageUrl.toString(), { timeout: 15_000 })
    .catch((e) => fail(`could not open ${shownUrl}: ${e.message.split('\n')[0]}`));
  if (!res || !res.ok()) fail(`GET ${shownUrl} answered ${res ? res.status() : 'nothing'}`);
  if ((await page.title()) !== 'Sluice') fail(`page title is ${JSON.stringify(await page.title())}, not "Sluice"`);
  await page.locator(rowSel).first().waitFor({ timeout: 10_000 }).catch(async () => {
    const conn = await page.locator('[data-field="connection"]').textContent().catch(() => '?');
    fail(`no ${rowSel} row within 10 s (connection: ${conn})`);
  });
  summary.plugins = (await field('plugins').innerText().catch(() => '')).replace(/\s+/g, ' ').trim();

  step = 'b: the pipeline is running and moving';
  const moving = [];
  await waitUntil('received-total grows over 1.5 s while state is running', 20_000, async () => {
    const a = await total();
    await sleep(1_500);
    const b = await total();
    const s = await text('state');
    moving.splice(0, 2, a, b);
    return (b > a && s === 'running') || `received-total ${a} -> ${b}, state ${s}`;
  });
  summary.running = { received: moving.slice(), received_rate: Number(await text('received-rate')) };

  step = 'b2: latency, sinks, dead letters by reason, host';
  // The test pipeline dead-letters every tenth message (malformed) into a `drop` sink `out`.
  await waitUntil('latency p50 · p99 shows numbers', 15_000, async () => {
    const t = await text('latency');
    return /^\d+(\.\d+)? · \d+(\.\d+)?$/.test(t) || `latency ${JSON.stringify(t)}`;
  });
  await waitUntil('dead letters by reason name "invalid"', 15_000, async () => {
    const t = await text('dead-letter-classes');
    return /invalid \d+/.test(t) || `dead-letter-classes ${JSON.stringify(t)}`;
  });
  const sinks = await text('sinks');
  if (!/out \(drop\) \d+ out, \d+ errors, \d+ rejected/.test(sinks)) fail(`sinks: ${JSON.stringify(sinks)}`);
  const lastDead = await text('last-dead-letters');
  if (!/: invalid: /.test(lastDead)) fail(`last-dead-letters: ${JSON.stringify(lastDead)}`);
  const host = ((await page.locator('[data-field="host"]').textContent().catch(() => '')) ?? '').trim();
  if (!/^sluice \d+\.\d+\.\d+ .* · up \d/.test(host)) fail(`host: ${JSON.stringify(host)}`);
  summary.panels = { latency: await text('latency'), sinks, dead_letters: await text('dead-letter-classes'), host };

  step = 'c: pause';
  await click('pause');
  await waitUntil('state reads paused', 10_000, stateIs('paused'));
  const atPause = await total();
  await sleep(1_000);              // let messages already in flight settle
  const settledA = await total();
  await sleep(2_000);
  const settledB = await total();
  summary.paused = { at_pause: atPause, settled: settledA, after_2s: settledB, in_flight: await text('in-flight') };
  if (settledB !== settledA) fail(`received-total grew while paused: ${settledA} -> ${settledB} in 2 s`);

  step = 'e: resume';
  await click('resume');
  await waitUntil('state reads running', 10_000, stateIs('running'));
  let resumed;
  await waitUntil(`received-total grows past ${settledB} after resume`, 15_000, async () => {
    resumed = await total();
    return resumed > settledB || `received-total ${resumed}`;
  });
  summary.resumed = { received: resumed };

  if (screenshot) {
    step = 'd: screenshot';
    await sleep(1_000);            // one more sample so the sparklines show the restart
    await page.screenshot({ path: screenshot, fullPage: true, timeout: 10_000 })
      .catch((e) => fail(`could not save the screenshot to ${screenshot}: ${e.message}`));
    summary.screenshot = screenshot;
  }

  step = 'f: summary';
  summary.connection = await page.locator('[data-field="connection"]').textContent().catch(() => null);
  summary.page_errors = pageErrors;
  summary.seconds = Math.round((Date.now() - started) / 100) / 10;
  console.log(JSON.stringify(summary));
  clearTimeout(overall);
  await finish(0);
}

main().catch((e) => finish(1, e instanceof Failure ? e.message : (e && e.stack) || String(e)));
