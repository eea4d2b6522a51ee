// Real processes for the cluster tests: agent services (`node dist/agent.js`), nginx running the committed
// deploy/nginx.conf, and a browser-protocol WebSocket page that can reconnect and resume. Every process started
// here is killed when the test process exits, whatever happens.
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, request as httpRequest } from 'node:http';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { SequencedAgentEvent, ServerMessage } from '@threadline/contracts';
import WebSocket from 'ws';
import { freePort } from '../../../packages/relay/test/servers.js';
import { EXAMPLE_DIR } from './user-host.js';

const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

async function stop(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (child.exitCode === null && child.signalCode === null) {
    child.kill(signal);
    const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
    await exited(child);
    clearTimeout(timer);
  }
  live.delete(child);
}

/** The environment of a process started by a test: the machine's, without vitest's and OpenAI's settings. */
function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k === 'NODE_ENV' || k.startsWith('VITEST') || k.startsWith('OPENAI_') || k.startsWith('THREADLINE_'))
      continue;
    env[k] = v;
  }
  return { ...env, ...extra };
}

export interface AgentService {
  url: string;
  port: number;
  child: ChildProcess;
  stop(): Promise<void>;
}

/**
 * Starts the reference host's agent service (`node dist/agent.js`, demo model) on a free loopback port, as an
 * operator runs it for AGENT_URL, and resolves once it listens.
 */
export async function startAgentService(options: { secret: string; delayMs: number }): Promise<AgentService> {
  const port = await freePort();
  const child = spawn(process.execPath, [join(EXAMPLE_DIR, 'dist/agent.js')], {
    env: cleanEnv({
      AGENT_PORT: String(port),
      AGENT_SHARED_SECRET: options.secret,
      DEMO_MODEL_DELAY_MS: String(options.delayMs),
    }),
    // IPC only to hear `ready`; the service runs the same without it.
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  live.add(child);
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`agent service did not start:\n${out}`)), 20_000);
    child.once('message', () => (clearTimeout(timer), resolve()));
    child.once('exit', (code) => (clearTimeout(timer), reject(new Error(`agent exited ${code}:\n${out}`))));
  });
  return { url: `http://127.0.0.1:${port}`, port, child, stop: () => stop(child) };
}

export interface Nginx {
  url: string;
  port: number;
  /** The access log: one line per request, `METHOD URI STATUS UPSTREAM_ADDRESS`. */
  accessLog(): string[];
  stop(): Promise<void>;
}

/** The committed nginx config, with its two upstream ports and its listen port replaced by the given ones. */
export function nginxConfig(upstreamPorts: [number, number], listenPort: number): string {
  const text = readFileSync(join(EXAMPLE_DIR, 'deploy/nginx.conf'), 'utf8');
  let i = 0;
  const replaced = text.replace(/^(\s*server )127\.0\.0\.1:\d+/gm, (_m, lead: string) => {
    const port = upstreamPorts[i++];
    return `${lead}127.0.0.1:${port}`;
  });
  if (i !== 2) throw new Error(`deploy/nginx.conf: expected 2 upstream servers, found ${i}`);
  const out = replaced.replace(/^(\s*)listen \d+;/m, `$1listen 127.0.0.1:${listenPort};`);
  if (out === replaced) throw new Error('deploy/nginx.conf: no `listen PORT;` line');
  return out;
}

/** Where nginx is, or null. */
export function nginxPath(): string | null {
  for (const p of ['/usr/sbin/nginx', '/usr/bin/nginx', '/usr/local/sbin/nginx']) if (existsSync(p)) return p;
  return null;
}

/**
 * Runs nginx in the foreground (`nginx -c FILE -p DIR`, `daemon off;`) on a free loopback port with
 * deploy/nginx.conf included in a minimal main config that keeps every path in a temp dir.
 */
export async function startNginx(upstreamPorts: [number, number], listenPort?: number): Promise<Nginx> {
  const bin = nginxPath();
  if (!bin) throw new Error('nginx not found; run `bash scripts/install-servers.sh` to install it');
  const port = listenPort ?? (await freePort());
  const dir = mkdtempSync(join(tmpdir(), 'threadline-nginx-'));
  // Worker processes run as an unprivileged user when nginx starts as root: they must reach the temp dirs.
  chmodSync(dir, 0o755);
  writeFileSync(join(dir, 'threadline.conf'), nginxConfig(upstreamPorts, port));
  writeFileSync(
    join(dir, 'nginx.conf'),
    [
      'daemon off;',
      'worker_processes 1;',
      `pid ${dir}/nginx.pid;`,
      `error_log ${dir}/error.log warn;`,
      'events { worker_connections 1024; }',
      'http {',
      ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((t) => `  ${t}_temp_path ${dir}/${t};`),
      "  log_format upstream '$request_method $uri $status $upstream_addr';",
      `  access_log ${dir}/access.log upstream;`,
      `  include ${dir}/threadline.conf;`,
      '}',
    ].join('\n'),
  );
  const child = spawn(bin, ['-c', join(dir, 'nginx.conf'), '-p', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`nginx exited with code ${child.exitCode}:\n${out}`);
    const up = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(500) }).then(
      (r) => (void r.body?.cancel(), true),
      () => false,
    );
    if (up) break;
    if (Date.now() > deadline) throw new Error(`nginx did not answer on port ${port}:\n${out}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    accessLog: () => {
      try {
        return readFileSync(join(dir, 'access.log'), 'utf8').split('\n').filter(Boolean);
      } catch {
        return [];
      }
    },
    stop: async () => {
      // SIGQUIT: graceful shutdown; SIGTERM would be fast shutdown. Either ends `daemon off` nginx.
      await stop(child, 'SIGTERM');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A page's WebSocket to one base URL (an instance or nginx), keeping every message. With `resume`, it
 * reconnects when the socket drops and subscribes again after the last seq it saw, as the web component does.
 */
export class Page {
  readonly messages: ServerMessage[] = [];
  ws!: WebSocket;
  #closed = false;
  #subscribed: string | undefined;
  #waiters: (() => void)[] = [];
  /** How many times the socket was opened. */
  opens = 0;

  private constructor(
    readonly base: string,
    readonly cookie: string,
    readonly origin: string,
    readonly resume: boolean,
  ) {}

  static async open(base: string, cookie: string, origin: string, resume = false): Promise<Page> {
    const page = new Page(base, cookie, origin, resume);
    await page.#connect();
    return page;
  }

  #connect(): Promise<void> {
    const ws = new WebSocket(`${this.base.replace('http', 'ws')}/ws`, {
      headers: { origin: this.origin, cookie: this.cookie },
    });
    this.ws = ws;
    ws.on('message', (data) => {
      this.messages.push(JSON.parse(String(data)) as ServerMessage);
      for (const w of this.#waiters.splice(0)) w();
    });
    ws.on('close', () => {
      if (!this.#closed && this.resume) setTimeout(() => void this.#reconnect(), 100);
    });
    return new Promise((resolve, reject) => {
      ws.once('open', () => {
        this.opens++;
        if (this.#subscribed) this.subscribe(this.#subscribed, this.lastSeq());
        resolve();
      });
      ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
      ws.once('error', reject);
    });
  }

  async #reconnect(): Promise<void> {
    for (let i = 0; i < 100 && !this.#closed; i++) {
      try {
        await this.#connect();
        return;
      } catch {
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  send(m: unknown): void {
    this.ws.send(JSON.stringify(m));
  }

  subscribe(threadId: string, afterSeq = 0): void {
    this.#subscribed = threadId;
    this.send({ type: 'subscribe', threadId, afterSeq });
  }

  events(): SequencedAgentEvent[] {
    return this.messages.flatMap((m) => (m.type === 'event' ? [m.event] : []));
  }

  lastSeq(): number {
    return this.events().at(-1)?.seq ?? 0;
  }

  /** Resolves with the first message matching `pred` (already received or coming). */
  async next(pred: (m: ServerMessage) => boolean, timeoutMs = 15_000): Promise<ServerMessage> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = this.messages.find(pred);
      if (m) return m;
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(
          `no matching message on ${this.base}; last: ${JSON.stringify(this.messages.slice(-3))}`,
        );
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.#waiters.push(() => (clearTimeout(t), resolve()));
      });
    }
  }

  close(): void {
    this.#closed = true;
    this.ws.close();
  }
}

/** Matches the terminal event (RUN_FINISHED or RUN_ERROR) of `runId`. */
export const ended = (runId: string) => (m: ServerMessage) =>
  m.type === 'event' &&
  (m.event.type === 'RUN_FINISHED' || m.event.type === 'RUN_ERROR') &&
  m.event.runId === runId;

/** The assistant text of a run, from its TEXT_MESSAGE_CHUNK events. */
export function runText(events: readonly SequencedAgentEvent[], runId: string): string {
  return events
    .filter((e) => e.type === 'TEXT_MESSAGE_CHUNK' && e.runId === runId)
    .map((e) => (e.type === 'TEXT_MESSAGE_CHUNK' ? e.delta : ''))
    .join('');
}

export interface PinProxy {
  /** The proxy's address, for a browser context's `proxy.server`. */
  server: string;
  /** Requests and WebSocket tunnels it forwarded. */
  forwarded: { requests: number; tunnels: number };
  close(): Promise<void>;
}

/**
 * An HTTP proxy that sends everything, whatever host it names, to one instance: a browser context using it
 * talks to that instance while its pages keep the public origin (so cookies and Origin checks are the real
 * ones). Plain requests come in absolute form and are forwarded; WebSockets come as CONNECT tunnels.
 */
export async function startPinProxy(targetPort: number): Promise<PinProxy> {
  const forwarded = { requests: 0, tunnels: 0 };
  const sockets = new Set<Socket>();
  const server = createHttpServer((req, res) => {
    forwarded.requests++;
    const url = new URL(req.url ?? '/', 'http://placeholder');
    const upstream = httpRequest(
      {
        host: '127.0.0.1',
        port: targetPort,
        method: req.method,
        path: url.pathname + url.search,
        headers: req.headers,
      },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      },
    );
    upstream.on('error', () => {
      if (!res.headersSent) res.writeHead(502);
      res.end();
    });
    req.pipe(upstream);
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  server.on('connect', (_req, client: Socket, head: Buffer) => {
    forwarded.tunnels++;
    const up = connect(targetPort, '127.0.0.1', () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length > 0) up.write(head);
      up.pipe(client);
      client.pipe(up);
    });
    sockets.add(up);
    const end = () => {
      up.destroy();
      client.destroy();
    };
    up.on('error', end);
    client.on('error', end);
    up.on('close', end);
    client.on('close', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    server: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
    forwarded,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
