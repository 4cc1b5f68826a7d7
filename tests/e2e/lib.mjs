// What the end-to-end tests share: the real outcall binary on a random 127.0.0.1 port, a real
// Chromium, a page that fails the flow on any console error, page error, failed request or
// HTTP error answer the flow did not expect, screenshots, and small readers of the exports.

import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, openSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { inflateRawSync } from 'node:zlib';
import { chromium } from 'playwright-core';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), 'fixtures');
export const SCREENSHOTS = join(ROOT, 'target', 'e2e-screenshots');
export const PASSWORD = 'e2e-admin-password';

/** Polls `check` (async, truthy when done) every 100 ms for at most `ms`; throws with `what`. */
export async function poll(what, check, ms = 15000) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    try {
      last = await check();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what} (last: ${last})`);
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/**
 * The outcall binary (`OUTCALL_BIN`) with its own data directory; `extra` flags appended.
 * `restart()` kills it (SIGKILL) and starts it again on the same port and data directory.
 */
export async function startOutcall(extra = []) {
  const bin = process.env.OUTCALL_BIN;
  if (!bin) throw new Error('OUTCALL_BIN must name the outcall binary (cargo sets it in tests/admin_page.rs)');
  const dir = mkdtempSync(join(tmpdir(), 'outcall-e2e-'));
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('OUTCALL_')));
  env.OUTCALL_ADMIN_PASSWORD = PASSWORD;
  let child;
  let runs = 0;
  let logPath;
  const server = {
    base,
    dir,
    log: () => readFileSync(logPath, 'utf8'),
    async start() {
      runs += 1;
      logPath = join(dir, `server-${runs}.log`);
      const log = openSync(logPath, 'w');
      child = spawn(bin, ['--listen', `127.0.0.1:${port}`, '--data-dir', join(dir, 'data'), ...extra], {
        env, stdio: ['ignore', log, log],
      });
      await poll('outcall to answer /healthz', async () => {
        if (child.exitCode !== null) throw new Error(`outcall exited: ${server.log()}`);
        return (await fetch(`${base}/healthz`)).ok;
      }, 20000);
    },
    async kill() {
      if (child && child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGKILL');
        await exited;
      }
    },
    async restart() {
      await server.kill();
      await server.start();
    },
    async stop() {
      await server.kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  await server.start();
  return server;
}

/** A token for setting things up through the API (the flows themselves use the page). */
export async function apiToken(base) {
  const response = await fetch(`${base}/api/sessions`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ login: 'admin', password: PASSWORD }),
  });
  return (await response.json()).token;
}

export async function apiCall(base, token, method, path, body) {
  const response = await fetch(`${base}${path}`, {
    method,
    headers: { 'X-XTRA-AUTH-ID': token, ...(body ? { 'Content-Type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${text}`);
  return JSON.parse(text);
}

export const launch = () => chromium.launch({
  executablePath: process.env.OUTCALL_CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--autoplay-policy=no-user-gesture-required'],
});

/**
 * A page whose problems are collected: console errors, page errors, failed requests and answers
 * ≥ 400. `expect(status, pattern)` allows one kind of answer for the current flow (an expected
 * 401 or a validation 400); `check()` throws listing whatever else happened, and clears the list.
 */
export async function watchedPage(browser) {
  const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1440, height: 900 }, locale: 'zh-CN' });
  const page = await context.newPage();
  const problems = [];
  const consoleErrors = [];
  let allowed = [];
  const allowedSeen = new Set(); // statuses of allowed answers this flow received
  let allowedFailures = []; // URLs whose requests may fail to connect in this flow
  const isAllowed = (status, url) => allowed.some((a) => a.status === status && a.pattern.test(url));
  page.on('console', (message) => {
    if (message.type() === 'error') consoleErrors.push({ text: message.text(), url: message.location()?.url || '' });
  });
  page.on('pageerror', (error) => problems.push(`page error: ${error.stack || error}`));
  page.on('requestfailed', (request) => {
    const failure = request.failure()?.errorText || '';
    // A request the page itself cancelled (an <audio> that got what it needed, a stream closed
    // on navigation) is not a failure of the server.
    if (failure === 'net::ERR_ABORTED') return;
    if (allowedFailures.some((pattern) => pattern.test(request.url()))) return;
    problems.push(`request failed: ${request.method()} ${request.url()} ${failure}`);
  });
  page.on('response', (response) => {
    const status = response.status();
    if (status < 400) return;
    if (isAllowed(status, response.url())) allowedSeen.add(status);
    else problems.push(`HTTP ${status}: ${response.request().method()} ${response.url()}`);
  });
  // Chromium logs every error answer on the console too ("… status of 401", "EventSource's
  // response has a status 401 …"): one of an allowed answer is not a problem of its own.
  // A request allowed to fail (its URL matches) logs its failure on the console too.
  const consoleProblems = () => consoleErrors.splice(0).filter(({ text, url }) => {
    const m = /status (?:of )?(\d{3})\b/.exec(text);
    if (/net::ERR_/.test(text) && allowedFailures.some((pattern) => pattern.test(url))) return false;
    return !(m && allowedSeen.has(Number(m[1])));
  }).map(({ text, url }) => `console error: ${text} (${url})`);
  return {
    page,
    context,
    expect(status, pattern) { allowed.push({ status, pattern }); },
    /** Requests to URLs matching `pattern` may fail to connect (while the server restarts). */
    expectUnreachable(pattern) { allowedFailures.push(pattern); },
    /** Forgets what an earlier (failed) flow left behind. */
    reset() {
      problems.splice(0); consoleErrors.splice(0); allowed = []; allowedSeen.clear();
      allowedFailures = [];
    },
    check(flow) {
      const found = [...problems.splice(0), ...consoleProblems()];
      allowed = [];
      allowedSeen.clear();
      allowedFailures = [];
      if (found.length) throw new Error(`${flow}: the page had problems:\n${found.join('\n')}`);
    },
  };
}

/** A watched page of a new browser, logged in as admin and on the task list; the browser is
 * closed by `cleanup`. */
export async function loggedInPage(base, cleanup) {
  const browser = await launch();
  cleanup.push(() => browser.close());
  const w = await watchedPage(browser);
  await w.page.goto(`${base}/#/login`);
  await w.page.fill('input[name=password]', PASSWORD);
  await w.page.click('button[type=submit]');
  await w.page.waitForURL(/#\/tasks$/);
  return w;
}

export async function screenshot(page, name, { fullPage = true } = {}) {
  mkdirSync(SCREENSHOTS, { recursive: true });
  await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage });
}

/** An 8 kHz mono 16-bit PCM WAV of a sine, as bytes. */
export function sineWav(millis, hz = 440) {
  const samples = Math.round((8000 * millis) / 1000);
  const buffer = Buffer.alloc(44 + samples * 2);
  buffer.write('RIFF', 0); buffer.writeUInt32LE(36 + samples * 2, 4); buffer.write('WAVE', 8);
  buffer.write('fmt ', 12); buffer.writeUInt32LE(16, 16); buffer.writeUInt16LE(1, 20); buffer.writeUInt16LE(1, 22);
  buffer.writeUInt32LE(8000, 24); buffer.writeUInt32LE(16000, 28); buffer.writeUInt16LE(2, 32); buffer.writeUInt16LE(16, 34);
  buffer.write('data', 36); buffer.writeUInt32LE(samples * 2, 40);
  for (let i = 0; i < samples; i++) buffer.writeInt16LE(Math.round(8000 * Math.sin((2 * Math.PI * hz * i) / 8000)), 44 + i * 2);
  return buffer;
}

/** The files of a ZIP archive (an XLSX), by name, read from its central directory. */
export function unzip(bytes) {
  const files = new Map();
  let end = bytes.length - 22;
  while (end >= 0 && bytes.readUInt32LE(end) !== 0x06054b50) end--;
  if (end < 0) throw new Error('not a ZIP archive');
  let at = bytes.readUInt32LE(end + 16);
  const count = bytes.readUInt16LE(end + 10);
  for (let i = 0; i < count; i++) {
    const method = bytes.readUInt16LE(at + 10);
    const size = bytes.readUInt32LE(at + 20);
    const nameLength = bytes.readUInt16LE(at + 28);
    const extra = bytes.readUInt16LE(at + 30);
    const comment = bytes.readUInt16LE(at + 32);
    const local = bytes.readUInt32LE(at + 42);
    const name = bytes.toString('utf8', at + 46, at + 46 + nameLength);
    const start = local + 30 + bytes.readUInt16LE(local + 26) + bytes.readUInt16LE(local + 28);
    const data = bytes.subarray(start, start + size);
    files.set(name, method === 8 ? inflateRawSync(data) : Buffer.from(data));
    at += 46 + nameLength + extra + comment;
  }
  return files;
}

/** The rows of an XLSX's first sheet as arrays of strings (shared and inline strings, numbers). */
export function xlsxRows(bytes) {
  const files = unzip(bytes);
  const shared = [];
  const sst = files.get('xl/sharedStrings.xml')?.toString('utf8') || '';
  for (const si of sst.matchAll(/<si>([\s\S]*?)<\/si>/g)) {
    shared.push([...si[1].matchAll(/<t[^>]*>([\s\S]*?)<\/t>/g)].map((m) => unescapeXml(m[1])).join(''));
  }
  const sheet = files.get('xl/worksheets/sheet1.xml').toString('utf8');
  const rows = [];
  for (const row of sheet.matchAll(/<row[^>]*>([\s\S]*?)<\/row>/g)) {
    const cells = [];
    for (const c of row[1].matchAll(/<c r="([A-Z]+)\d+"([^>]*?)(?:\/>|>([\s\S]*?)<\/c>)/g)) {
      const column = [...c[1]].reduce((n, ch) => n * 26 + ch.charCodeAt(0) - 64, 0) - 1;
      const type = /t="(\w+)"/.exec(c[2])?.[1];
      const inner = c[3] || '';
      let value = '';
      if (type === 's') value = shared[Number(/<v>([^<]*)<\/v>/.exec(inner)[1])];
      else if (type === 'inlineStr') value = [...inner.matchAll(/<t[^>]*>([\s\S]*?)<\/t>/g)].map((m) => unescapeXml(m[1])).join('');
      else value = unescapeXml(/<v>([^<]*)<\/v>/.exec(inner)?.[1] || '');
      cells[column] = value;
    }
    rows.push(Array.from(cells, (v) => v ?? ''));
  }
  return rows;
}

const unescapeXml = (s) => s.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&apos;/g, "'").replace(/&amp;/g, '&');

/** Rows of CSV text (quotes, CRLF). */
export function csvRows(text) {
  const rows = [];
  let row = [];
  let cell = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') { cell += '"'; i++; } else if (c === '"') quoted = false; else cell += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') { row.push(cell); cell = ''; }
    else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++;
      row.push(cell); rows.push(row); row = []; cell = '';
    } else cell += c;
  }
  if (cell || row.length) { row.push(cell); rows.push(row); }
  return rows;
}
