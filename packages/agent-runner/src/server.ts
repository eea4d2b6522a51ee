import {
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server as HttpServer,
  type ServerResponse,
} from 'node:http';
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';
import type { AddressInfo, Server as NetServer, Socket } from 'node:net';
import {
  RunRequestSchema,
  isTerminalEvent,
  safeParseJson,
  type ContractIssue,
  type RunRequest,
} from '@threadline/contracts';
import { createCredentialCheck, type AgentAuth } from './auth.js';
import { doctor, formatDoctorReport } from './doctor.js';
import { checkServerOptions } from './options.js';
import { abortReason } from './run-errors.js';
import type { AgentRunner } from './runner-options.js';
import { speakBoth } from './dual-protocol.js';
import { drainTraces } from './tracing.js';

/** Options of {@link createAgentServer}. */
export interface AgentServerOptions {
  /** How requests prove they come from the API. Required. */
  auth: AgentAuth;
  /** Most runs at once in this process (default 32); more get 429 with Retry-After. */
  maxConcurrentRuns?: number;
  /** Seconds suggested by Retry-After on 429 (default 1). */
  retryAfterSeconds?: number;
  /** A `: ping` comment is sent when nothing else was written for this long, in ms (default 15000). */
  heartbeatMs?: number;
  /** Largest run request body in bytes (default 262144); larger gets 413. */
  maxBodyBytes?: number;
  /** Time allowed to send the request body, in ms (default 10000); slower gets 408. */
  bodyTimeoutMs?: number;
  /** A client that stops reading for this long has its run cancelled, in ms (default 30000). */
  writeStallTimeoutMs?: number;
  /**
   * Most bytes of SSE text gathered before they are written, in UTF-16 code units (default 32768). Events that
   * arrive together (in one tick) go out in one write up to this bound; a lone event is written at once.
   */
  maxWriteBatchBytes?: number;
  /** Where errors are logged (default console). */
  logger?: Pick<Console, 'info' | 'warn' | 'error'>;
}

/**
 * A request listener for both `node:http` (`IncomingMessage`/`ServerResponse`) and the `node:http2` compatibility
 * API (`Http2ServerRequest`/`Http2ServerResponse`): pass it to `http.createServer` or `http2.createServer`.
 */
export type AgentRequestListener = (
  req: IncomingMessage | Http2ServerRequest,
  res: ServerResponse | Http2ServerResponse,
) => void;

/** The service as a Node request listener, plus graceful shutdown. */
export interface AgentServer {
  handler: AgentRequestListener;
  /** Number of runs streaming now. */
  activeRuns(): number;
  /**
   * Stops accepting runs, lets running ones finish for up to `deadlineMs` (default 10000), then cancels them with
   * RUN_ERROR `shutdown` and flushes traces.
   */
  close(options?: { deadlineMs?: number }): Promise<void>;
}

/** Error codes of the service's JSON error bodies. */
export const AGENT_SERVER_ERROR_CODES = [
  'unauthorized',
  'invalid_json',
  'invalid_request',
  'unsupported_media_type',
  'payload_too_large',
  'request_timeout',
  'too_many_runs',
  'run_conflict',
  'not_found',
  'method_not_allowed',
  'shutting_down',
  'internal_error',
] as const;
type ServerErrorCode = (typeof AGENT_SERVER_ERROR_CODES)[number];

/** The request target as a URL; an unparsable one (e.g. `http://[x/`) is null rather than a thrown error. */
function parseTarget(target: string | undefined): URL | null {
  try {
    return new URL(target ?? '/', 'http://localhost');
  } catch {
    return null;
  }
}

/** Decodes a path segment; malformed percent-encoding names no run (undefined) instead of throwing. */
function decodePathSegment(segment: string): string | undefined {
  try {
    return decodeURIComponent(segment);
  } catch {
    return undefined;
  }
}

/** What the handler uses of a request, the same on HTTP/1 (`IncomingMessage`) and HTTP/2 (`Http2ServerRequest`). */
interface Req {
  readonly headers: IncomingHttpHeaders;
  readonly url?: string | undefined;
  readonly method?: string | undefined;
  readonly httpVersionMajor: number;
  readonly socket: unknown;
  on(event: 'data', listener: (chunk: Buffer) => void): unknown;
  on(event: 'end' | 'error' | 'close', listener: () => void): unknown;
  resume(): unknown;
}

/** What the handler uses of a response, the same on HTTP/1 (`ServerResponse`) and HTTP/2 (`Http2ServerResponse`). */
interface Res {
  readonly req: { readonly httpVersionMajor: number };
  readonly headersSent: boolean;
  readonly writableEnded: boolean;
  /** Absent on `Http2ServerResponse`: track 'close' as well. */
  readonly destroyed?: boolean;
  writeHead(status: number, headers: Record<string, string>): unknown;
  /** Not in @types/node's Http2ServerResponse; there writeHead sends the headers at once anyway. */
  flushHeaders?(): void;
  write(chunk: string): boolean;
  end(): unknown;
  end(chunk: string): unknown;
  destroy(): unknown;
  on(event: 'close' | 'drain', listener: () => void): unknown;
  off(event: 'close' | 'drain', listener: () => void): unknown;
}

function sendError(
  res: Res,
  status: number,
  code: ServerErrorCode,
  message: string,
  extra: { issues?: ContractIssue[]; headers?: Record<string, string> } = {},
) {
  if (res.headersSent) return void res.destroy();
  // `connection` is an HTTP/1 header; HTTP/2 forbids it (node:http2 drops it with a warning or refuses it).
  const connection: Record<string, string> = res.req.httpVersionMajor === 1 ? { connection: 'close' } : {};
  res.writeHead(status, { 'content-type': 'application/json', ...connection, ...extra.headers });
  res.end(JSON.stringify({ error: { code, message, ...(extra.issues ? { issues: extra.issues } : {}) } }));
}

interface ActiveRun {
  controller: AbortController;
  done: Promise<void>;
}

/**
 * Creates the agent HTTP service: `POST /runs` streams a run as SSE (`data: <event JSON>` per event, `: ping`
 * heartbeats), `DELETE /runs/:runId` cancels, `GET /healthz` reports health. Every request must carry the
 * service credential; anything else gets 401 before any work.
 *
 * @example
 * const server = createAgentServer(createRunner(), { auth: { sharedSecret: process.env.AGENT_SECRET! } });
 * http.createServer(server.handler).listen(8787);
 */
export function createAgentServer(runner: AgentRunner, options: AgentServerOptions): AgentServer {
  checkServerOptions(options);
  const check = createCredentialCheck(options.auth);
  const maxRuns = options.maxConcurrentRuns ?? 32;
  const heartbeatMs = options.heartbeatMs ?? 15_000;
  const maxBody = options.maxBodyBytes ?? 262_144;
  const bodyTimeoutMs = options.bodyTimeoutMs ?? 10_000;
  const stallMs = options.writeStallTimeoutMs ?? 30_000;
  const maxBatch = Math.max(1, options.maxWriteBatchBytes ?? 32_768);
  const logger = options.logger ?? console;
  const active = new Map<string, ActiveRun>();
  let reserved = 0;
  let closing = false;

  const readBody = (req: Req): Promise<{ text: string } | { error: 'too_large' | 'timeout' | 'aborted' }> =>
    new Promise((resolve) => {
      const parts: Buffer[] = [];
      let size = 0;
      let settled = false;
      const finish = (v: { text: string } | { error: 'too_large' | 'timeout' | 'aborted' }) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(v);
      };
      const timer = setTimeout(() => finish({ error: 'timeout' }), bodyTimeoutMs);
      const declared = Number(req.headers['content-length'] ?? 0);
      if (declared > maxBody) return finish({ error: 'too_large' });
      req.on('data', (c: Buffer) => {
        size += c.length;
        if (size > maxBody) return finish({ error: 'too_large' });
        parts.push(c);
      });
      req.on('end', () => finish({ text: Buffer.concat(parts).toString('utf8') }));
      req.on('error', () => finish({ error: 'aborted' }));
      req.on('close', () => finish({ error: 'aborted' }));
    });

  async function postRun(req: Req, res: Res) {
    if (closing) return sendError(res, 503, 'shutting_down', 'The agent service is shutting down.');
    if (active.size + reserved >= maxRuns) {
      return sendError(res, 429, 'too_many_runs', `At most ${maxRuns} runs at once; retry shortly.`, {
        headers: { 'retry-after': String(options.retryAfterSeconds ?? 1) },
      });
    }
    const type = String(req.headers['content-type'] ?? '');
    if (!/^application\/json\b/i.test(type)) {
      return sendError(res, 415, 'unsupported_media_type', 'Send the run request as application/json.');
    }
    reserved++;
    let request: RunRequest;
    try {
      const body = await readBody(req);
      if ('error' in body) {
        if (body.error === 'too_large')
          return sendError(res, 413, 'payload_too_large', `The run request is larger than ${maxBody} bytes.`);
        if (body.error === 'timeout')
          return sendError(res, 408, 'request_timeout', 'The run request body arrived too slowly.');
        return void res.destroy();
      }
      const parsed = safeParseJson(RunRequestSchema, body.text, 'run request');
      if (!parsed.ok) {
        const code = parsed.error.code === 'invalid_json' ? 'invalid_json' : 'invalid_request';
        return sendError(res, 400, code, parsed.error.message, { issues: parsed.error.issues });
      }
      request = parsed.value;
      if (active.has(request.runId))
        return sendError(res, 409, 'run_conflict', `Run ${request.runId} is already running.`);
      if (closing) return sendError(res, 503, 'shutting_down', 'The agent service is shutting down.');
    } finally {
      reserved--;
    }
    await stream(request, req, res);
  }

  async function stream(request: RunRequest, req: Req, res: Res) {
    const controller = new AbortController();
    let resolveDone!: () => void;
    const done = new Promise<void>((r) => (resolveDone = r));
    active.set(request.runId, { controller, done });
    // `Http2ServerResponse` has no `destroyed`: a 'close' (client gone, HTTP/2 stream reset) marks the end too.
    let closed = false;
    const gone = () => closed || res.destroyed === true;
    // Removed before the response is ended, so a 'close' heard here is a client that went away: an HTTP/1
    // disconnect or an HTTP/2 RST_STREAM (after which Http2ServerResponse reports writableFinished, so only
    // writableEnded tells the cases apart).
    const onClose = () => {
      closed = true;
      if (!res.writableEnded) controller.abort(abortReason('aborted', 'The client disconnected.'));
    };
    res.on('close', onClose);
    // Backpressure from the return value of write(): `writableNeedDrain` is missing on some Node versions'
    // Http2ServerResponse. Set by a write that filled the buffer, cleared by its 'drain'.
    let needDrain = false;
    const onDrain = () => (needDrain = false);
    res.on('drain', onDrain);
    // HTTP/1 only: over HTTP/2 `req.socket` is a proxy of the session's socket (shared by every stream) and
    // the session already disables Nagle.
    if (req.httpVersionMajor === 1) (req.socket as Socket).setNoDelay(true);
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      'x-accel-buffering': 'no',
    });
    res.flushHeaders?.();
    let lastWrite = Date.now();
    const send = (text: string) => {
      if (!res.write(text)) needDrain = true;
      lastWrite = Date.now();
    };
    /** Waits for the response to drain; a reader that stalls past the bound loses its run. */
    const drained = () =>
      new Promise<void>((resolve) => {
        if (gone()) return resolve();
        const timer = setTimeout(() => {
          controller.abort(abortReason('aborted', 'The client stopped reading.'));
          finish();
          closed = true;
          res.destroy();
        }, stallMs);
        const finish = () => {
          clearTimeout(timer);
          res.off('drain', finish);
          res.off('close', finish);
          resolve();
        };
        res.on('drain', finish);
        res.on('close', finish);
      });
    const heartbeat = setInterval(
      () => {
        if (Date.now() - lastWrite >= heartbeatMs && !res.writableEnded && !gone()) send(': ping\n\n');
      },
      Math.max(10, Math.floor(heartbeatMs / 2)),
    );
    // Events are gathered into one string and written once per tick (or at the size bound): a write per event
    // costs a syscall, an HTTP chunk header and a nextTick callback each, which capped the service at a fraction
    // of what the socket carries. The flush runs as soon as the runner waits for anything, so no event waits
    // for a timer.
    let pending = '';
    let flushQueued = false;
    const flush = () => {
      flushQueued = false;
      if (pending === '') return;
      const text = pending;
      pending = '';
      if (gone() || res.writableEnded) return;
      send(text);
    };
    try {
      for await (const event of runner.run(request, { signal: controller.signal })) {
        if (gone()) continue; // keep draining so the runner reaches its terminal event and cleans up
        pending += `data: ${JSON.stringify(event)}\n\n`;
        if (isTerminalEvent(event)) break;
        if (pending.length >= maxBatch) flush();
        else if (!flushQueued) {
          flushQueued = true;
          process.nextTick(flush);
        }
        // A flush (here or in an earlier tick) filled the buffer: wait before asking for more events.
        if (needDrain) await drained();
      }
    } catch (error) {
      logger.error('[threadline-agent] run stream failed', error);
    } finally {
      clearInterval(heartbeat);
      res.off('close', onClose);
      res.off('drain', onDrain);
      if (!res.writableEnded) {
        if (!gone() && pending !== '') res.end(pending);
        else res.end();
      }
      pending = '';
      active.delete(request.runId);
      resolveDone();
    }
  }

  const handler: AgentRequestListener = (request, response) => {
    const req: Req = request;
    const res: Res = response;
    void (async () => {
      // Authenticate before reading anything else: unauthenticated callers cost no work.
      if (!(await check(req.headers.authorization))) {
        req.resume();
        return sendError(res, 401, 'unauthorized', 'Missing or invalid service credential.', {
          headers: { 'www-authenticate': 'Bearer' },
        });
      }
      const url = parseTarget(req.url);
      if (!url) return sendError(res, 404, 'not_found', 'Not found.');
      if (url.pathname === '/healthz') {
        if (req.method !== 'GET') return sendError(res, 405, 'method_not_allowed', 'Use GET.');
        res.writeHead(closing ? 503 : 200, { 'content-type': 'application/json' });
        return void res.end(
          JSON.stringify({ ok: !closing, activeRuns: active.size, maxConcurrentRuns: maxRuns }),
        );
      }
      if (url.pathname === '/runs') {
        if (req.method !== 'POST') return sendError(res, 405, 'method_not_allowed', 'Use POST.');
        return postRun(req, res);
      }
      const m = /^\/runs\/([^/]+)$/.exec(url.pathname);
      if (m) {
        if (req.method !== 'DELETE') return sendError(res, 405, 'method_not_allowed', 'Use DELETE.');
        const runId = decodePathSegment(m[1] ?? '');
        const run = runId === undefined ? undefined : active.get(runId);
        if (!run) return sendError(res, 404, 'not_found', 'No such run is active here.');
        run.controller.abort(abortReason('cancelled', 'The run was cancelled.'));
        res.writeHead(202, { 'content-type': 'application/json' });
        return void res.end(JSON.stringify({ ok: true }));
      }
      return sendError(res, 404, 'not_found', 'Not found.');
    })().catch((error: unknown) => {
      logger.error('[threadline-agent] request failed', error);
      if (!res.headersSent) sendError(res, 500, 'internal_error', 'Internal error.');
      else res.destroy();
    });
  };

  return {
    handler,
    activeRuns: () => active.size,
    async close({ deadlineMs = 10_000 } = {}) {
      closing = true;
      const all = () => Promise.all([...active.values()].map((r) => r.done));
      let timer: NodeJS.Timeout | undefined;
      const expired = await Promise.race([
        all().then(() => false),
        new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), deadlineMs))),
      ]);
      clearTimeout(timer);
      if (expired) {
        for (const run of active.values()) {
          run.controller.abort(
            abortReason('shutdown', 'The agent service shut down before the run finished.'),
          );
        }
        await all();
      }
      await drainTraces();
    },
  };
}

/** Options of {@link serveAgent}. */
export interface ServeAgentOptions extends AgentServerOptions {
  /** Port to listen on (default 0: any free port). */
  port?: number;
  /** Interface to listen on (default 127.0.0.1). */
  host?: string;
  /** Run `doctor` at start and log what it finds (default true). */
  doctor?: boolean;
  /**
   * Also speak cleartext HTTP/2 with prior knowledge (h2c) on the same port (default true): a client that opens
   * with the HTTP/2 preface gets an HTTP/2 session that carries all its runs as streams of one connection;
   * anything else is served as HTTP/1.1. `false`: HTTP/1.1 only. A connection that has not shown which protocol
   * it speaks within `bodyTimeoutMs` is closed.
   */
  http2?: boolean;
}

/** A listening agent service. */
export interface ServedAgent {
  url: string;
  port: number;
  /** Number of runs streaming now. */
  activeRuns(): number;
  /**
   * Graceful shutdown: see {@link AgentServer.close}; then closes every HTTP/1.1 connection and HTTP/2 session,
   * and the listener.
   */
  close(options?: { deadlineMs?: number }): Promise<void>;
}

/**
 * Starts the agent service on a port: {@link createAgentServer} plus a listener, with `doctor` logged at start.
 * The port speaks HTTP/1.1 and cleartext HTTP/2 (h2c, prior knowledge) unless `http2: false`.
 *
 * @example
 * const served = await serveAgent(createRunner(), { auth: { sharedSecret: secret }, port: 8787 });
 * process.on('SIGTERM', () => void served.close({ deadlineMs: 10_000 }));
 */
export async function serveAgent(runner: AgentRunner, options: ServeAgentOptions): Promise<ServedAgent> {
  const logger = options.logger ?? console;
  const app = createAgentServer(runner, options);
  const h1Server = createServer(app.handler);
  h1Server.requestTimeout = 0; // runs stream for minutes; body reads have their own bound
  const h2 =
    options.http2 !== false
      ? speakBoth(h1Server, app.handler, {
          maxStreams: options.maxConcurrentRuns ?? 32,
          sniffMs: options.bodyTimeoutMs ?? 10_000,
          logger,
        })
      : null;
  const listener: NetServer | HttpServer = h2?.listener ?? h1Server;
  await new Promise<void>((resolve, reject) => {
    listener.once('error', reject);
    listener.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => {
      listener.off('error', reject);
      resolve();
    });
  });
  // Errors of the listening socket (e.g. EMFILE on accept) are logged, never thrown.
  listener.on('error', (error) => logger.error('[threadline-agent] listener error', error));
  const { port } = listener.address() as AddressInfo;
  const host = options.host ?? '127.0.0.1';
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  if (options.doctor !== false) {
    const report = doctor();
    const log = report.ok ? logger.info : logger.warn;
    log.call(logger, formatDoctorReport(report));
  }
  logger.info(`[threadline-agent] listening on ${url}${h2 ? ' (HTTP/1.1 and h2c)' : ''}`);
  let closed: Promise<void> | null = null;
  return {
    url,
    port,
    activeRuns: app.activeRuns,
    close(closeOptions) {
      closed ??= (async () => {
        const listening = new Promise<void>((resolve) => listener.close(() => resolve()));
        h2?.closeIdle();
        await app.close(closeOptions);
        h2?.closeAll();
        h1Server.closeAllConnections();
        await listening;
      })();
      return closed;
    },
  };
}
