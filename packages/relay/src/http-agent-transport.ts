import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import type { IncomingMessage, OutgoingHttpHeaders } from 'node:http';
import { connect as http2Connect, constants as h2 } from 'node:http2';
import type { ClientHttp2Session, ClientHttp2Stream, OutgoingHttpHeaders as Http2Headers } from 'node:http2';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { AgentEventSchema, safeParse } from '@threadline/contracts';
import type { AgentEvent, RunRequest } from '@threadline/contracts';
import { AgentTransportError } from './agent-transport.js';
import { isPlainChunk } from './chunk-check.js';
import type { ChunkIdCache } from './chunk-check.js';
import { RelayError } from './errors.js';
import type { AgentTransport } from './agent-transport.js';
import { SseParser } from './sse.js';

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
 * HTTP/2 receive window of one run's stream (256 KiB): the most bytes the agent can send on a run ahead of the
 * relay reading them, so the bound on what one run buffers here. Across runs the bound is runs × this window.
 */
const HTTP2_STREAM_WINDOW = 256 << 10;
/**
 * HTTP/2 receive window of the session (16 MiB): the most bytes in flight on the connection at once. Node hands
 * data to each stream's buffer as it arrives and gives the session window back then, so this is a throughput
 * ceiling (the 64 KiB default would throttle a burst), not a second bound on unread bytes.
 */
const HTTP2_SESSION_WINDOW = 16 << 20;

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
          response = await open(
            `${base}/runs`,
            await credential(),
            JSON.stringify(request),
            controller.signal,
          );
          break;
        } catch (cause) {
          if (signal.aborted) throw cause;
          if (!connectionRefused(cause) || Date.now() >= waitUntil) {
            throw new AgentTransportError(
              'agent_unreachable',
              `could not reach the agent at ${base}/runs${waitForAgentMs > 0 && connectionRefused(cause) ? ` within ${waitForAgentMs} ms` : ''}: ${describe(cause)}`,
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
        const detail = await response.readSome();
        const message = `the agent answered HTTP ${response.status}${detail ? `: ${detail}` : ''}`;
        // 429: at capacity, the run was not started; the relay may queue it and try again.
        if (response.status === 429) {
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
      if (!type.toLowerCase().startsWith('text/event-stream')) {
        throw new AgentTransportError(
          'agent_stream_invalid',
          `the agent answered with content-type "${type.slice(0, 100)}", not text/event-stream`,
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
          `${base}/runs/${encodeURIComponent(runId)}`,
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

/** A response as the transport needs it, whichever HTTP client produced it. */
interface OpenedResponse {
  status: number;
  contentType: string;
  /** The Retry-After header, if any. */
  retryAfter?: string | undefined;
  body: AsyncIterable<Uint8Array>;
  /** Throws if the body, whose iterator is done, was cut off rather than ended (for clients that do not say). */
  checkEnd?(): void;
  /** The start of the body, for an error message: the first chunk at most, never the whole body. */
  readSome(): Promise<string>;
  /**
   * Releases the response (idempotent): `drain` after the terminal event reads the rest of the body (briefly)
   * so the connection can be reused; otherwise an unfinished response is cut off.
   */
  close(drain?: boolean): void;
}

/** POSTs `body` as JSON (or DELETEs when it is null) with the credential; resolves at the response headers. */
type Opener = (
  url: string,
  credential: string,
  body: string | null,
  signal: AbortSignal,
) => Promise<OpenedResponse>;

/** An opener and how to release the connections it keeps. */
interface Client {
  open: Opener;
  close(): void;
}

function fetchOpener(fetchImpl: typeof fetch): Opener {
  return async (url, credential, body, signal) => {
    const response = await fetchImpl(url, {
      method: body === null ? 'DELETE' : 'POST',
      headers: {
        authorization: `Bearer ${credential}`,
        ...(body === null ? {} : { 'content-type': 'application/json', accept: 'text/event-stream' }),
      },
      ...(body === null ? {} : { body }),
      signal,
    });
    const reader = response.body?.getReader();
    let closed = false;
    const close = () => {
      if (closed) return;
      closed = true;
      reader?.cancel().catch(() => {});
    };
    const read = async (): Promise<IteratorResult<Uint8Array>> =>
      reader ? ((await reader.read()) as IteratorResult<Uint8Array>) : { done: true, value: undefined };
    return {
      status: response.status,
      contentType: response.headers.get('content-type') ?? '',
      retryAfter: response.headers.get('retry-after') ?? undefined,
      body: { [Symbol.asyncIterator]: () => ({ next: read }) },
      async readSome() {
        try {
          const first = await read();
          return first.done ? '' : summarize(first.value);
        } catch {
          return '';
        } finally {
          close();
        }
      },
      close,
    };
  };
}

function nodeHttpClient(base: string): Client {
  const secure = new URL(base).protocol === 'https:';
  const agent = secure ? new HttpsAgent({ keepAlive: true }) : new HttpAgent({ keepAlive: true });
  const send = secure ? httpsRequest : httpRequest;
  const open: Opener = (url, credential, body, signal) =>
    new Promise<OpenedResponse>((resolve, reject) => {
      const headers: OutgoingHttpHeaders = { authorization: `Bearer ${credential}` };
      if (body !== null) {
        headers['content-type'] = 'application/json';
        headers.accept = 'text/event-stream';
        headers['content-length'] = Buffer.byteLength(body);
      }
      const req = send(url, { method: body === null ? 'DELETE' : 'POST', headers, agent });
      // Aborting destroys the request and its response; a response iterator then throws.
      let response: IncomingMessage | undefined;
      const onAbort = () => {
        // A response received in full has nothing left to abort (destroying its request then throws).
        if (!response) req.destroy(toError(signal.reason));
        else if (!response.complete) response.destroy(toError(signal.reason));
      };
      if (signal.aborted) onAbort();
      else signal.addEventListener('abort', onAbort, { once: true });
      req.on('error', (error) => {
        signal.removeEventListener('abort', onAbort);
        reject(error); // no-op once the response arrived: its reader sees the error
      });
      req.once('response', (res: IncomingMessage) => {
        response = res;
        res.on('error', () => {}); // surfaced by the body iterator while it reads; ignored after close
        let closed = false;
        const close = (drain?: boolean) => {
          if (closed) return;
          closed = true;
          signal.removeEventListener('abort', onAbort);
          if (res.complete) return void res.resume(); // drained, the socket goes back to the pool
          if (!drain) return void res.destroy();
          // After the terminal event only the end of the body is left: read it, so the connection is kept,
          // but never wait for it long.
          const cut = setTimeout(() => res.destroy(), 1_000);
          cut.unref();
          res.once('close', () => clearTimeout(cut)).resume();
        };
        resolve({
          status: res.statusCode ?? 0,
          contentType: String(res.headers['content-type'] ?? ''),
          retryAfter: res.headers['retry-after'],
          body: res,
          readSome: () =>
            new Promise<string>((done) => {
              res.once('data', (first: Buffer) => {
                done(summarize(first));
                res.destroy();
              });
              res.once('end', () => done(''));
              res.once('close', () => done(''));
            }).finally(() => close()),
          close,
        });
      });
      req.end(body ?? undefined);
    });
  return { open, close: () => agent.destroy() };
}

/** One HTTP/2 session and the number of streams open on it. */
interface Http2Slot {
  session: ClientHttp2Session;
  streams: number;
  pinging: boolean;
}

/**
 * Requests over one HTTP/2 session, created on first use and shared by every request: a new one replaces it
 * once it errs, closes or receives GOAWAY (streams in flight on the old one finish or fail on their own). The
 * session is unref'd while no stream is open, so an idle transport never keeps the process alive. A request
 * aborted before it ended (the connect timeout, an idle run) pings the session: one that does not answer
 * within `pingTimeoutMs` is destroyed, so a dead connection cannot swallow every later run.
 */
function nodeHttp2Client(base: string, pingTimeoutMs: number): Client {
  let current: Http2Slot | undefined;

  function slot(): Http2Slot {
    if (current && !current.session.closed && !current.session.destroyed) return current;
    const session = http2Connect(base, {
      settings: { enablePush: false, initialWindowSize: HTTP2_STREAM_WINDOW },
    });
    const made: Http2Slot = { session, streams: 0, pinging: false };
    current = made;
    const retire = () => {
      if (current === made) current = undefined;
    };
    // A session's failure reaches every request through its own stream; here it only retires the session.
    session.on('error', retire);
    session.once('goaway', retire);
    session.once('close', retire);
    session.once('connect', () => {
      try {
        session.setLocalWindowSize(HTTP2_SESSION_WINDOW);
      } catch {
        // Closed in the meantime: the next request makes a new session.
      }
    });
    session.unref();
    return made;
  }

  function healthCheck(s: Http2Slot): void {
    if (s.pinging || s.session.closed || s.session.destroyed) return;
    s.pinging = true;
    const done = () => {
      s.pinging = false;
      clearTimeout(timer);
    };
    const timer = setTimeout(() => {
      s.pinging = false;
      s.session.destroy(new Error(`the agent did not answer an HTTP/2 ping within ${pingTimeoutMs} ms`));
    }, pingTimeoutMs);
    timer.unref();
    try {
      if (!s.session.ping(done)) done();
    } catch {
      done();
    }
  }

  function request(headers: Http2Headers, endStream: boolean): { s: Http2Slot; stream: ClientHttp2Stream } {
    try {
      const s = slot();
      return { s, stream: s.session.request(headers, { endStream }) };
    } catch {
      // The session cannot take another stream (closing, out of stream ids): retire it, try a fresh one once.
      current?.session.close();
      current = undefined;
      const s = slot();
      return { s, stream: s.session.request(headers, { endStream }) };
    }
  }

  const open: Opener = (url, credential, body, signal) =>
    new Promise<OpenedResponse>((resolve, reject) => {
      if (signal.aborted) return reject(toError(signal.reason));
      const target = new URL(url);
      const headers: Http2Headers = {
        ':method': body === null ? 'DELETE' : 'POST',
        ':path': `${target.pathname}${target.search}`,
        authorization: `Bearer ${credential}`,
      };
      if (body !== null) {
        headers['content-type'] = 'application/json';
        headers.accept = 'text/event-stream';
      }
      // A refused stream was never processed by the agent (a GOAWAY crossed it, or the agent was at its stream
      // limit): it is sent again once, on whatever session is current by then.
      const attempt = (mayRetry: boolean) => {
        let s: Http2Slot;
        let stream: ClientHttp2Stream;
        try {
          ({ s, stream } = request(headers, body === null));
        } catch (error) {
          return reject(error);
        }
        if (s.streams++ === 0) s.session.ref();
        let responded = false;
        let failed = false;
        let ended = false;
        let closed = false;
        const cancel = () => {
          if (!stream.closed && !stream.destroyed) stream.close(h2.NGHTTP2_CANCEL);
        };
        const onAbort = () => {
          if (ended) return; // received in full: nothing left to abort
          healthCheck(s);
          cancel();
          if (!responded) reject(toError(signal.reason));
        };
        const fail = (error: Error) => {
          // After the response the body iterator reports errors; after close they are moot.
          if (responded || failed) return;
          failed = true;
          signal.removeEventListener('abort', onAbort);
          if (mayRetry && !signal.aborted && stream.rstCode === h2.NGHTTP2_REFUSED_STREAM) attempt(false);
          else reject(error);
        };
        signal.addEventListener('abort', onAbort, { once: true });
        stream.on('error', fail);
        stream.once('end', () => (ended = true));
        stream.once('close', () => {
          signal.removeEventListener('abort', onAbort);
          if (--s.streams === 0 && !s.session.destroyed) s.session.unref();
          if (!responded) fail(streamCutOff(stream));
        });
        stream.once('response', (responseHeaders) => {
          responded = true;
          const close = () => {
            if (closed) return;
            closed = true;
            signal.removeEventListener('abort', onAbort);
            // With HTTP/2 there is no connection to keep for the next request: an unfinished stream is cancelled.
            if (!ended) cancel();
          };
          resolve({
            status: Number(responseHeaders[':status'] ?? 0),
            contentType: String(responseHeaders['content-type'] ?? ''),
            retryAfter: responseHeaders['retry-after']?.toString(),
            body: stream,
            // A stream reset or cut off with its session ends its iterator quietly, as if the agent had ended it.
            checkEnd() {
              if (!stream.readableEnded) throw signal.aborted ? toError(signal.reason) : streamCutOff(stream);
            },
            readSome: () =>
              new Promise<string>((done) => {
                stream.once('data', (first: Buffer) => done(summarize(first)));
                stream.once('end', () => done(''));
                stream.once('close', () => done(''));
              }).finally(close),
            close,
          });
        });
        if (body !== null) stream.end(body);
      };
      attempt(true);
    });

  return {
    open,
    close() {
      current?.session.close();
      current = undefined;
    },
  };
}

/** HTTP/2 error codes (RFC 9113 section 7) by value, for messages. */
const HTTP2_ERROR_NAMES = [
  'NO_ERROR',
  'PROTOCOL_ERROR',
  'INTERNAL_ERROR',
  'FLOW_CONTROL_ERROR',
  'SETTINGS_TIMEOUT',
  'STREAM_CLOSED',
  'FRAME_SIZE_ERROR',
  'REFUSED_STREAM',
  'CANCEL',
  'COMPRESSION_ERROR',
  'CONNECT_ERROR',
  'ENHANCE_YOUR_CALM',
  'INADEQUATE_SECURITY',
  'HTTP_1_1_REQUIRED',
];

function streamCutOff(stream: ClientHttp2Stream): Error {
  const code = stream.rstCode;
  const name = HTTP2_ERROR_NAMES[code] ?? `code ${code}`;
  return new Error(`the HTTP/2 stream was closed before it ended (${name})`);
}

/** Retry-After in whole seconds (the form agent services send) as ms, bounded to an hour; else undefined. */
function retryAfter(header: string | undefined): number | undefined {
  if (header === undefined || !/^\s*\d{1,7}\s*$/.test(header)) return undefined;
  return Math.min(Number(header) * 1000, 3_600_000);
}

function toError(reason: unknown): Error {
  return reason instanceof Error ? reason : new Error(String(reason ?? 'aborted'));
}

function summarize(bytes: Uint8Array): string {
  const text = new TextDecoder().decode(bytes.subarray(0, 400));
  return text.slice(0, 200).replace(/\s+/g, ' ').trim();
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
