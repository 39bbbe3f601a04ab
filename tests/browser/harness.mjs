// Browser test harness: headless Debian Chromium via playwright-core, confined to a private
// network namespace (see scripts/netns-run). Run browser tests as:
//   scripts/netns-run node --test tests/browser/<name>.test.mjs
import os from 'node:os';
import { chromium } from 'playwright-core';

export const CHROMIUM_PATH = process.env.P2PSYNC_CHROMIUM || '/usr/bin/chromium';
export const CHROMIUM_ARGS = Object.freeze([
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  // raw 198.18.0.x host candidates instead of mDNS .local names (nothing resolves mDNS here)
  '--disable-features=WebRtcHideLocalIpsWithMdns',
]);
const ALLOWED_IFACES = new Set(['lo', 'p2ps0', 'p2ps1']);

/**
 * Is this process in a private namespace made by scripts/netns-run? True when the only
 * interfaces carrying addresses are lo and the p2ps0/p2ps1 veth pair (and p2ps0 exists).
 * @returns {{ok:boolean, interfaces:string[], reason:string}}
 */
export function checkPrivateNetns() {
  const interfaces = Object.keys(os.networkInterfaces()).sort();
  const foreign = interfaces.filter((n) => !ALLOWED_IFACES.has(n));
  if (foreign.length) return { ok: false, interfaces, reason: `foreign interface(s) present: ${foreign.join(', ')}` };
  if (!interfaces.includes('p2ps0')) return { ok: false, interfaces, reason: 'p2ps0 (veth) is missing' };
  return { ok: true, interfaces, reason: '' };
}

/** Throw a clear error unless running inside the private namespace. */
export function assertPrivateNetns() {
  const r = checkPrivateNetns();
  if (!r.ok) {
    throw new Error(
      `browser tests must run inside a private network namespace (${r.reason}; interfaces: ${r.interfaces.join(', ') || 'none'}).\n` +
      '  Run them as:  scripts/netns-run node --test tests/browser/<name>.test.mjs\n' +
      '  (WebRTC would otherwise gather candidates on the machine\'s outward interface.)',
    );
  }
  return r;
}

/**
 * Launch headless Chromium. Refuses to run outside the private namespace unless
 * requireNetns is false.
 * @param {{requireNetns?:boolean, args?:string[], headless?:boolean, executablePath?:string, timeout?:number}} [o]
 * @returns {Promise<import('playwright-core').Browser>}
 */
export async function launchBrowser({ requireNetns = true, args = [], headless = true, executablePath = CHROMIUM_PATH, timeout = 30000 } = {}) {
  if (requireNetns) assertPrivateNetns();
  return chromium.launch({ executablePath, headless, args: [...CHROMIUM_ARGS, ...args], timeout });
}

/**
 * Open n pages, each in its own browser context (separate storage, like separate players),
 * all on `url` (or url(i) if a function). Console output and page errors are collected per page.
 * @param {import('playwright-core').Browser} browser
 * @param {string|((i:number)=>string)} url
 * @param {number} n
 * @param {{echo?:boolean, waitUntil?:'load'|'domcontentloaded'|'networkidle'|'commit'}} [o]
 * @returns {Promise<Array<{index:number, context:import('playwright-core').BrowserContext, page:import('playwright-core').Page, logs:string[]}>>}
 */
export async function openPages(browser, url, n, { echo = !!process.env.P2PSYNC_ECHO, waitUntil = 'load' } = {}) {
  const handles = [];
  for (let i = 0; i < n; i++) {
    const context = await browser.newContext();
    const page = await context.newPage();
    const logs = [];
    const push = (m) => { logs.push(m); if (echo) console.log(`[page ${i}] ${m}`); };
    page.on('console', (msg) => push(`${msg.type()}: ${msg.text()}`));
    page.on('pageerror', (err) => push(`pageerror: ${err.message}`));
    page.on('requestfailed', (req) => push(`requestfailed: ${req.url()} ${req.failure()?.errorText}`));
    handles.push({ index: i, context, page, logs });
  }
  await Promise.all(handles.map((h) => h.page.goto(typeof url === 'function' ? url(h.index) : url, { waitUntil })));
  return handles;
}

/** Close contexts opened by openPages (ignores errors). */
export async function closePages(handles) {
  await Promise.all((handles || []).map((h) => h.context.close().catch(() => {})));
}

/** Dump collected page logs (for a failing test's diagnostics). */
export function dumpLogs(handles, out = console.error) {
  for (const h of handles || []) for (const l of h.logs) out(`[page ${h.index}] ${l}`);
}
