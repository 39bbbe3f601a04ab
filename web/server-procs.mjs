// Start and stop a private redis-server and web/server.mjs processes on 127.0.0.1 (used by
// tests/node/server-redis.test.mjs and scripts/loadtest). Every wait is bounded in time.
import { spawn, execFileSync } from 'node:child_process';
import net from 'node:net';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const SERVER_SCRIPT = path.join(HERE, 'server.mjs');

/** A TCP port that was free on 127.0.0.1 a moment ago. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

export function redisServerPath() {
  for (const p of ['/usr/bin/redis-server', '/usr/local/bin/redis-server']) if (fs.existsSync(p)) return p;
  try {
    return execFileSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' }).trim() || null;
  } catch {
    return null;
  }
}

function waitExit(child, ms) {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve(true);
    const t = setTimeout(() => resolve(false), ms);
    child.once('exit', () => { clearTimeout(t); resolve(true); });
  });
}
async function stopChild(child, ms = 5000) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  if (!(await waitExit(child, ms))) { child.kill('SIGKILL'); await waitExit(child, 2000); }
}

/**
 * A throwaway redis-server on 127.0.0.1 (no persistence, its own temp dir).
 * @returns {Promise<{url:string, port:number, pid:number, child:import('node:child_process').ChildProcess, stop:()=>Promise<void>}>}
 */
export async function startRedis({ port, timeoutMs = 10000 } = {}) {
  const bin = redisServerPath();
  if (!bin) throw new Error('redis-server is not installed (scripts/setup installs the Debian package)');
  port = port || await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'p2psync-redis-'));
  const child = spawn(bin, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
    '--dir', dir, '--daemonize', 'no', '--loglevel', 'warning', '--protected-mode', 'yes'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => { if (out.length < 65536) out += d; });
  child.stderr.on('data', (d) => { if (out.length < 65536) out += d; });
  const stop = async () => { await stopChild(child); fs.rmSync(dir, { recursive: true, force: true }); };
  const t0 = Date.now();
  for (;;) {
    if (child.exitCode !== null) throw new Error(`redis-server exited (${child.exitCode}): ${out.slice(-2000)}`);
    const ok = await new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      let buf = '';
      s.setTimeout(500, () => { s.destroy(); resolve(false); });
      s.on('error', () => resolve(false));
      s.on('connect', () => s.write('PING\r\n'));
      s.on('data', (d) => { buf += d; if (buf.includes('\r\n')) { s.destroy(); resolve(buf.startsWith('+PONG')); } });
    });
    if (ok) break;
    if (Date.now() - t0 > timeoutMs) { await stop(); throw new Error(`redis-server did not answer on port ${port}: ${out.slice(-2000)}`); }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { url: `redis://127.0.0.1:${port}`, port, pid: child.pid, child, stop };
}

/**
 * `node web/server.mjs --host 127.0.0.1 --port 0 ...args` as a child process; resolves once it
 * printed its URL. `lines` collects what it prints after that (bounded).
 */
export async function spawnServer(args = [], { timeoutMs = 15000, nodeArgs = [] } = {}) {
  const child = spawn(process.execPath, [...nodeArgs, SERVER_SCRIPT, '--host', '127.0.0.1', '--port', '0', ...args],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines = [];
  const keep = (l) => { if (lines.length < 10000) lines.push(l); };
  let err = '';
  child.stderr.on('data', (d) => { for (const l of String(d).split('\n')) if (l) keep(l); if (err.length < 65536) err += d; });
  const url = await new Promise((resolve, reject) => {
    let buf = '';
    let found = false;
    const t = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`server did not start: ${err.slice(-2000)}`)); }, timeoutMs);
    child.stdout.on('data', (d) => {
      buf += d;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (!found && /^http:\/\//.test(line)) { found = true; clearTimeout(t); resolve(line.trim()); } else keep(line);
      }
    });
    child.once('exit', (code) => { if (!found) { clearTimeout(t); reject(new Error(`server exited (${code}): ${err.slice(-2000)}`)); } });
  });
  return { url, port: Number(new URL(url).port), pid: child.pid, child, lines, stop: () => stopChild(child, 10000) };
}

/** CPU seconds (user + system) and RSS (MB) of a process, from /proc. */
export function procUsage(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(f[11]) + Number(f[12]); // utime, stime (fields 14, 15)
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const rss = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] || 0);
    return { cpuSeconds: ticks / CLK_TCK, rssMB: rss / 1024 };
  } catch {
    return null;
  }
}
const CLK_TCK = (() => {
  try { return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100; } catch { return 100; }
})();
