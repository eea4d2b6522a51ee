import {
  AGENT_HTTP_ERROR_STATUS,
  AGENT_HTTP_PATHS,
  AgentEventSchema,
  AgentHttpErrorBodySchema,
  SSE_MEDIA_TYPE,
  agentRunPath,
  safeParse,
  safeParseJson,
} from '@threadline/contracts';
import type { AgentEvent, RunRequest } from '@threadline/contracts';
import { AgentTransportError } from './agent-transport.js';
import { isPlainChunk } from './chunk-check.js';
import type { ChunkIdCache } from './chunk-check.js';
import { RelayError } from '../errors.js';
import type { AgentTransport } from './agent-transport.js';
import { SseParser } from './sse.js';
import { fetchOpener, nodeHttpClient, summarize, toError } from './http-client.js';
import type { Client, OpenedResponse } from './http-client.js';
import { nodeHttp2Client } from './http2-client.js';

/** Options of {@link httpAgentTransport}. */
export interface HttpAgentTransportOptions {
  /** The agent service's base URL; runs are POSTed to `${url}/runs`. */
  url: string;
  /** Sent as `Authorization: Bearer <credential>`; a function is called for every request. */
  credential: string | (() => string | Promise<string>);
  /** Injected fetch; by default requests go over node:http(s) with a keep-alive connection pool. */
  fetch?: typeof fetch;
  /**
   * Speak HTTP/2 to the agent (default false: HTTP/1.1): one session (one connection) carries every run as a
   * stream, cleartext with prior knowledge for `http:` URLs, TLS with ALPN `h2` for `https:`. Only for an agent
   * service that speaks HTTP/2, such as `serveAgent` of @threadline/agent-runner. Not with `fetch`.
   */
  http2?: boolean;
  /** How long to wait for the response headers of `POST /runs` (default 10,000 ms). */
  connectTimeoutMs?: number;
  /**
   * How long a run waits for an agent service that refuses connections (starting, or restarting after a crash)
   * before it fails with `agent_unreachable`: the POST is retried with a growing delay (50 ms doubling to 1 s)
   * within this bound. Only refused connections are retried, where the agent cannot have seen the run.
   * 0 fails at once. Default 10,000 ms.
   */
  waitForAgentMs?: number;
  /** Longest single SSE event, in characters (default 1 MiB). */
  maxEventLength?: number;
  /** How long a cancel's `DELETE /runs/:runId` may take (default 5,000 ms). */
  cancelTimeoutMs?: number;
}
/**
 * Reaches an agent service over HTTP: `POST {url}/runs` with the run request as JSON, events back as a
 * `text/event-stream`, every one parsed strictly and validated against the contract. Cancel aborts the
 * request and sends `DELETE {url}/runs/:runId`. With `http2: true` all runs share one HTTP/2 connection.
 * `close()` closes idle keep-alive connections, or the HTTP/2 session once its streams are done (a later run
 * connects again); calling it is optional, idle connections never keep the process alive.
 *
 * @example
 * const agent = httpAgentTransport({ url: 'http://127.0.0.1:4100', credential: process.env.AGENT_SECRET! });
 */
export function httpAgentTransport(options: HttpAgentTransportOptions): AgentTransport & { close(): void } {
  const base = agentBaseUrl(options.url);
  const connectTimeoutMs = positiveInt(options.connectTimeoutMs, 10_000, 'connectTimeoutMs');
  const maxEventLength = positiveInt(options.maxEventLength, 1 << 20, 'maxEventLength');
  const cancelTimeoutMs = positiveInt(options.cancelTimeoutMs, 5_000, 'cancelTimeoutMs');
  const waitForAgentMs = positiveInt(options.waitForAgentMs, 10_000, 'waitForAgentMs', 0);
  const useHttp2 = options.http2 ?? false;
  if (typeof useHttp2 !== 'boolean') {
    throw new RelayError(
      'invalid_options',
      `httpAgentTransport: http2 must be a boolean, got ${JSON.stringify(useHttp2)}`,
    );
  }
  if (useHttp2 && options.fetch) {
    throw new RelayError(
      'invalid_options',
      'httpAgentTransport: http2 and fetch conflict (an injected fetch picks its own protocol); pass one of them',
    );
  }
  const credential = async () =>
    typeof options.credential === 'function' ? await options.credential() : options.credential;
  // Without an injected fetch, runs go over node:http with a keep-alive pool: its first request in a process
  // costs about half of undici fetch's, and a response read as Buffer chunks skips the web-stream machinery.
  // Over HTTP/2 one connection multiplexes every run: one read carries events of many runs.
  const client: Client = options.fetch
    ? { open: fetchOpener(options.fetch), close() {} }
    : useHttp2
      ? nodeHttp2Client(base, connectTimeoutMs)
      : nodeHttpClient(base);
  const open = client.open;
  const runsUrl = `${base}${AGENT_HTTP_PATHS.runs}`;

  /**
   * The run's events, one array per network read (everything that read completed). Bounded by the read: at
   * most one socket read's worth of events (64 KiB by default) plus the SSE parser's one partial event.
   */
  async function* runBatches(
    request: RunRequest,
    { signal }: { signal: AbortSignal },
  ): AsyncGenerator<AgentEvent[]> {
    const controller = new AbortController();
    const onAbort = () => controller.abort(signal.reason);
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
    const waitUntil = Date.now() + waitForAgentMs;
    let response: OpenedResponse | undefined;
    try {
      for (let delay = 50; ; delay = Math.min(delay * 2, 1_000)) {
        const connectTimer = setTimeout(
          () => controller.abort(new Error(`no response within ${connectTimeoutMs} ms`)),
          connectTimeoutMs,
        );
        try {
          response = await open(runsUrl, await credential(), JSON.stringify(request), controller.signal);
          break;
        } catch (cause) {
          if (signal.aborted) throw cause;
          if (!connectionRefused(cause) || Date.now() >= waitUntil) {
            throw new AgentTransportError(
              'agent_unreachable',
              `could not reach the agent at ${runsUrl}${waitForAgentMs > 0 && connectionRefused(cause) ? ` within ${waitForAgentMs} ms` : ''}: ${describe(cause)}`,
              { cause },
            );
          }
        } finally {
          clearTimeout(connectTimer);
        }
        await sleep(Math.min(delay, waitUntil - Date.now()), controller.signal);
        if (signal.aborted) throw toError(signal.reason);
      }
      if (response.status < 200 || response.status > 299) {
        const message = `the agent answered HTTP ${response.status}${describeBody(await response.readSome())}`;
        // At capacity, the run was not started: the relay may queue it and try again.
        if (response.status === AGENT_HTTP_ERROR_STATUS.too_many_runs) {
          const retryAfterMs = retryAfter(response.retryAfter);
          throw new AgentTransportError(
            'agent_busy',
            message,
            retryAfterMs === undefined ? {} : { retryAfterMs },
          );
        }
        throw new AgentTransportError('agent_unreachable', message);
      }
      const type = response.contentType;
      if (!type.toLowerCase().startsWith(SSE_MEDIA_TYPE)) {
        throw new AgentTransportError(
          'agent_stream_invalid',
          `the agent answered with content-type "${type.slice(0, 100)}", not ${SSE_MEDIA_TYPE}`,
        );
      }
      const chunks = response.body[Symbol.asyncIterator]();
      const decoder = new TextDecoder('utf-8', { fatal: true });
      const parser = new SseParser(maxEventLength);
      const parsePayload = payloadParser();
      for (;;) {
        let chunk: IteratorResult<Uint8Array>;
        try {
          chunk = await chunks.next();
          if (chunk.done) response.checkEnd?.();
        } catch (cause) {
          if (signal.aborted) throw cause;
          throw new AgentTransportError(
            'agent_unreachable',
            `the connection to the agent dropped mid-stream: ${describe(cause)}`,
            { cause },
          );
        }
        let text: string;
        try {
          text = chunk.done ? decoder.decode() : decoder.decode(chunk.value, { stream: true });
        } catch (cause) {
          throw new AgentTransportError('agent_stream_invalid', 'the agent sent invalid UTF-8', { cause });
        }
        const batch: AgentEvent[] = [];
        let ended = false;
        let failure: unknown;
        try {
          for (const payload of parser.push(text)) {
            const event = parsePayload(payload);
            batch.push(event);
            if (event.type === 'RUN_FINISHED' || event.type === 'RUN_ERROR') {
              // The stream ends here (the relay reads no further): give the connection back before yielding.
              signal.removeEventListener('abort', onAbort);
              response.close(true);
              ended = true;
              break;
            }
          }
        } catch (error) {
          failure = error;
        }
        // The events before a bad one still go out, as they would one at a time; then the failure.
        if (batch.length > 0) yield batch;
        if (failure !== undefined) throw failure;
        if (ended || chunk.done) return;
      }
    } finally {
      signal.removeEventListener('abort', onAbort);
      response?.close();
      // Frees the connection whichever way the stream ended.
      controller.abort();
    }
  }

  async function* run(request: RunRequest, options: { signal: AbortSignal }): AsyncGenerator<AgentEvent> {
    for await (const batch of runBatches(request, options)) yield* batch;
  }

  return {
    run,
    runBatches,
    multiplexed: useHttp2,
    async cancel(runId: string): Promise<void> {
      try {
        const response = await open(
          `${base}${agentRunPath(runId)}`,
          await credential(),
          null,
          AbortSignal.timeout(cancelTimeoutMs),
        );
        response.close();
      } catch {
        // Best effort: the aborted stream already tells the agent to stop.
      }
    },
    close: () => client.close(),
  };
}
/** Retry-After in whole seconds (the form agent services send) as ms, bounded to an hour; else undefined. */
function retryAfter(header: string | undefined): number | undefined {
  if (header === undefined || !/^\s*\d{1,7}\s*$/.test(header)) return undefined;
  return Math.min(Number(header) * 1000, 3_600_000);
}

/**
 * The start of an error answer's body for a message: the service's code and message when it is the agent
 * service's error body, else the text itself, shortened.
 */
function describeBody(start: string): string {
  const body = safeParseJson(AgentHttpErrorBodySchema, start, 'agent error body');
  const detail = body.ok ? `${body.value.error.code}: ${body.value.error.message}` : start;
  const short = summarize(detail);
  return short === '' ? '' : `: ${short}`;
}

/**
 * Parses and validates SSE payloads of one stream. Text chunks, nearly all of a stream, are checked by hand
 * against exactly what the contract's schema requires (the same six keys, types and bounds); anything else, or
 * a chunk that fails the quick check, goes through the schema, which also words the error.
 */
function payloadParser(): (payload: string) => AgentEvent {
  // Ids repeat on every chunk of a stream: each distinct one is checked once.
  const seen: ChunkIdCache = {};
  return (payload) => {
    let value: unknown;
    try {
      value = JSON.parse(payload);
    } catch (cause) {
      throw new AgentTransportError('agent_stream_invalid', 'the agent sent an SSE event that is not JSON', {
        cause,
      });
    }
    if (isPlainChunk(value, null, null, seen)) return value;
    const parsed = safeParse(AgentEventSchema, value, 'agent event');
    if (!parsed.ok)
      throw new AgentTransportError('agent_stream_invalid', `the agent sent an ${parsed.error.message}`, {
        cause: parsed.error,
      });
    return parsed.value;
  };
}

function describe(cause: unknown): string {
  if (cause instanceof Error) {
    const inner =
      cause.cause instanceof Error && !cause.message.includes(cause.cause.message)
        ? ` (${cause.cause.message})`
        : '';
    return `${cause.message}${inner}`;
  }
  return String(cause);
}

/** The agent service's base URL without trailing slashes; anything but an http(s) URL is refused up front. */
function agentBaseUrl(url: unknown): string {
  let parsed: URL | undefined;
  try {
    parsed = typeof url === 'string' ? new URL(url) : undefined;
  } catch {
    parsed = undefined;
  }
  if (!parsed || (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')) {
    throw new RelayError(
      'invalid_options',
      `httpAgentTransport: url must be an http(s) URL, got ${JSON.stringify(url)}`,
    );
  }
  return (url as string).replace(/\/+$/, '');
}

function positiveInt(value: number | undefined, fallback: number, name: string, min = 1): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < min) {
    throw new RelayError(
      'invalid_options',
      `httpAgentTransport: ${name} must be an integer of at least ${min}, got ${value}`,
    );
  }
  return value;
}

/** True when `cause` (or an error it wraps) is a refused TCP connection: nothing reached the agent. */
function connectionRefused(cause: unknown): boolean {
  for (let e = cause, depth = 0; e instanceof Error && depth < 4; e = e.cause, depth++) {
    if ((e as NodeJS.ErrnoException).code === 'ECONNREFUSED') return true;
    // Several addresses (localhost: ::1 and 127.0.0.1) all refused.
    if (e instanceof AggregateError && e.errors.every(connectionRefused)) return true;
  }
  return false;
}

/** Resolves after `ms`, or at once when `signal` aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}
