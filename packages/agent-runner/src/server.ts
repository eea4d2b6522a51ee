import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';
import { RunRequestSchema, safeParseJson, type RunRequest } from '@threadline/contracts';
import { createCredentialCheck, type AgentAuth } from './auth.js';
import { readBody, type Req, type Res } from './http-io.js';
import { checkServerOptions } from './options.js';
import { abortReason } from './run-errors.js';
import type { AgentRunner } from './runner-options.js';
import { matchRoute, sendError } from './service-protocol.js';
import { streamRun } from './sse-stream.js';
import { drainTraces } from './tracing.js';

/** Options of {@link createAgentServer}. */
export interface AgentServerOptions {
  /** How requests prove they come from the API. Required. */
  auth: AgentAuth;
  /**
   * Most runs at once in this process; more get 429 with Retry-After.
   * @default 32
   */
  maxConcurrentRuns?: number;
  /**
   * Seconds suggested by Retry-After on 429.
   * @default 1
   */
  retryAfterSeconds?: number;
  /**
   * A `: ping` comment is sent when nothing else was written for this long, in ms.
   * @default 15000
   */
  heartbeatMs?: number;
  /**
   * Largest run request body in bytes; larger gets 413.
   * @default 262144
   */
  maxBodyBytes?: number;
  /**
   * Time allowed to send the request body, in ms; slower gets 408.
   * @default 10000
   */
  bodyTimeoutMs?: number;
  /**
   * A client that stops reading for this long has its run cancelled, in ms.
   * @default 30000
   */
  writeStallTimeoutMs?: number;
  /**
   * Most bytes of SSE text gathered before they are written, in UTF-16 code units. Events that arrive together
   * (in one tick) go out in one write up to this bound; a lone event is written at once.
   * @default 32768
   */
  maxWriteBatchBytes?: number;
  /** Where errors are logged (default console). */
  logger?: Pick<Console, 'info' | 'warn' | 'error'>;
}

/** The defaults of {@link AgentServerOptions} (serveAgent reads two of them too). */
export const AGENT_SERVER_DEFAULTS = Object.freeze({
  maxConcurrentRuns: 32,
  retryAfterSeconds: 1,
  heartbeatMs: 15_000,
  maxBodyBytes: 262_144,
  bodyTimeoutMs: 10_000,
  writeStallTimeoutMs: 30_000,
  maxWriteBatchBytes: 32_768,
});

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
  const settings = { ...AGENT_SERVER_DEFAULTS, ...definedOnly(options) };
  const maxRuns = settings.maxConcurrentRuns;
  const maxBody = settings.maxBodyBytes;
  const logger = options.logger ?? console;
  const active = new Map<string, ActiveRun>();
  let reserved = 0;
  let closing = false;

  async function postRun(req: Req, res: Res) {
    if (closing) return sendError(res, 503, 'shutting_down', 'The agent service is shutting down.');
    if (active.size + reserved >= maxRuns) {
      return sendError(res, 429, 'too_many_runs', `At most ${maxRuns} runs at once; retry shortly.`, {
        headers: { 'retry-after': String(settings.retryAfterSeconds) },
      });
    }
    const type = String(req.headers['content-type'] ?? '');
    if (!/^application\/json\b/i.test(type)) {
      return sendError(res, 415, 'unsupported_media_type', 'Send the run request as application/json.');
    }
    reserved++;
    let request: RunRequest;
    try {
      const body = await readBody(req, { maxBytes: maxBody, timeoutMs: settings.bodyTimeoutMs });
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
    try {
      await streamRun({ runner, request, req, res, controller, settings, logger });
    } finally {
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
      const target = matchRoute(req.url);
      switch (target.route) {
        case 'health':
          if (req.method !== 'GET') return sendError(res, 405, 'method_not_allowed', 'Use GET.');
          res.writeHead(closing ? 503 : 200, { 'content-type': 'application/json' });
          return void res.end(
            JSON.stringify({ ok: !closing, activeRuns: active.size, maxConcurrentRuns: maxRuns }),
          );
        case 'runs':
          if (req.method !== 'POST') return sendError(res, 405, 'method_not_allowed', 'Use POST.');
          return postRun(req, res);
        case 'run': {
          if (req.method !== 'DELETE') return sendError(res, 405, 'method_not_allowed', 'Use DELETE.');
          const run = target.runId === undefined ? undefined : active.get(target.runId);
          if (!run) return sendError(res, 404, 'not_found', 'No such run is active here.');
          run.controller.abort(abortReason('cancelled', 'The run was cancelled.'));
          res.writeHead(202, { 'content-type': 'application/json' });
          return void res.end(JSON.stringify({ ok: true }));
        }
        case 'none':
          return sendError(res, 404, 'not_found', 'Not found.');
      }
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

/** The numeric settings of `options` that are set, so that spreading them over the defaults keeps a default. */
function definedOnly(options: AgentServerOptions): Partial<typeof AGENT_SERVER_DEFAULTS> {
  const out: Record<string, number> = {};
  for (const key of Object.keys(AGENT_SERVER_DEFAULTS) as (keyof typeof AGENT_SERVER_DEFAULTS)[]) {
    const value = options[key];
    if (value !== undefined) out[key] = value;
  }
  return out;
}
