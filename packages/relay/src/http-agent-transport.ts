import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import type { IncomingMessage, OutgoingHttpHeaders } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { AgentEventSchema, ID_PATTERN, LIMITS, safeParse } from '@threadline/contracts';
import type { AgentEvent, RunRequest } from '@threadline/contracts';
import { AgentTransportError } from './agent-transport.js';
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
  /** How long to wait for the response headers of `POST /runs` (default 10,000 ms). */
  connectTimeoutMs?: number;
  /** Longest single SSE event, in characters (default 1 MiB). */
  maxEventLength?: number;
  /** How long a cancel's `DELETE /runs/:runId` may take (default 5,000 ms). */
  cancelTimeoutMs?: number;
}

/**
 * Reaches an agent service over HTTP: `POST {url}/runs` with the run request as JSON, events back as a
 * `text/event-stream`, every one parsed strictly and validated against the contract. Cancel aborts the
 * request and sends `DELETE {url}/runs/:runId`.
 *
 * @example
 * const agent = httpAgentTransport({ url: 'http://127.0.0.1:4100', credential: process.env.AGENT_SECRET! });
 */
export function httpAgentTransport(options: HttpAgentTransportOptions): AgentTransport {
  const base = agentBaseUrl(options.url);
  const connectTimeoutMs = positiveInt(options.connectTimeoutMs, 10_000, 'connectTimeoutMs');
  const maxEventLength = positiveInt(options.maxEventLength, 1 << 20, 'maxEventLength');
  const cancelTimeoutMs = positiveInt(options.cancelTimeoutMs, 5_000, 'cancelTimeoutMs');
  const credential = async () =>
    typeof options.credential === 'function' ? await options.credential() : options.credential;
  // Without an injected fetch, runs go over node:http with a keep-alive pool: its first request in a process
  // costs about half of undici fetch's, and a response read as Buffer chunks skips the web-stream machinery.
  const open = options.fetch ? fetchOpener(options.fetch) : nodeHttpOpener(base);

  async function* run(request: RunRequest, { signal }: { signal: AbortSignal }): AsyncGenerator<AgentEvent> {
    const controller = new AbortController();
    const onAbort = () => controller.abort(signal.reason);
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
    const connectTimer = setTimeout(
      () => controller.abort(new Error(`no response within ${connectTimeoutMs} ms`)),
      connectTimeoutMs,
    );
    let response: OpenedResponse | undefined;
    try {
      try {
        response = await open(`${base}/runs`, await credential(), JSON.stringify(request), controller.signal);
      } catch (cause) {
        if (signal.aborted) throw cause;
        throw new AgentTransportError(
          'agent_unreachable',
          `could not reach the agent at ${base}/runs: ${describe(cause)}`,
          { cause },
        );
      } finally {
        clearTimeout(connectTimer);
      }
      if (response.status < 200 || response.status > 299) {
        const detail = await response.readSome();
        throw new AgentTransportError(
          'agent_unreachable',
          `the agent answered HTTP ${response.status}${detail ? `: ${detail}` : ''}`,
        );
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
        for (const payload of parser.push(text)) {
          const event = parsePayload(payload);
          if (event.type === 'RUN_FINISHED' || event.type === 'RUN_ERROR') {
            // The stream ends here (the relay reads no further): give the connection back before yielding.
            signal.removeEventListener('abort', onAbort);
            response.close(true);
            yield event;
            return;
          }
          yield event;
        }
        if (chunk.done) return;
      }
    } finally {
      signal.removeEventListener('abort', onAbort);
      response?.close();
      // Frees the connection whichever way the stream ended.
      controller.abort();
    }
  }

  return {
    run,
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
  };
}

/** A response as the transport needs it, whichever HTTP client produced it. */
interface OpenedResponse {
  status: number;
  contentType: string;
  body: AsyncIterable<Uint8Array>;
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

function nodeHttpOpener(base: string): Opener {
  const secure = new URL(base).protocol === 'https:';
  const agent = secure ? new HttpsAgent({ keepAlive: true }) : new HttpAgent({ keepAlive: true });
  const send = secure ? httpsRequest : httpRequest;
  return (url, credential, body, signal) =>
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
  // Ids repeat on every chunk of a stream: each distinct one is checked against the pattern once.
  let okThread: string | undefined;
  let okRun: string | undefined;
  let okMessage: string | undefined;
  const isId = (v: unknown): v is string =>
    typeof v === 'string' && v.length <= LIMITS.maxIdLength && v.length > 0 && ID_PATTERN.test(v);
  const isChunk = (value: unknown): value is AgentEvent => {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
    const e = value as Record<string, unknown>;
    if (e.type !== 'TEXT_MESSAGE_CHUNK') return false;
    const { threadId, runId, messageId, ts, delta } = e;
    if (typeof ts !== 'number' || !Number.isSafeInteger(ts) || ts < 0) return false;
    if (typeof delta !== 'string' || delta.length > LIMITS.maxDeltaLength) return false;
    if (threadId !== okThread) {
      if (!isId(threadId)) return false;
      okThread = threadId;
    }
    if (runId !== okRun) {
      if (!isId(runId)) return false;
      okRun = runId;
    }
    if (messageId !== okMessage) {
      if (!isId(messageId)) return false;
      okMessage = messageId;
    }
    // Exactly those six keys (the schema is strict); JSON.parse makes plain objects with own keys only.
    let keys = 0;
    for (const key in e) {
      if (!Object.hasOwn(e, key)) return false;
      keys++;
    }
    return keys === 6;
  };
  return (payload) => {
    let value: unknown;
    try {
      value = JSON.parse(payload);
    } catch (cause) {
      throw new AgentTransportError('agent_stream_invalid', 'the agent sent an SSE event that is not JSON', {
        cause,
      });
    }
    if (isChunk(value)) return value;
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
    const inner = cause.cause instanceof Error ? ` (${cause.cause.message})` : '';
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

function positiveInt(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value <= 0) {
    throw new RelayError(
      'invalid_options',
      `httpAgentTransport: ${name} must be a positive integer, got ${value}`,
    );
  }
  return value;
}
