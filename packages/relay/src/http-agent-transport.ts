import { AgentEventSchema, ID_PATTERN, LIMITS, safeParse } from '@threadline/contracts';
import type { AgentEvent, RunRequest } from '@threadline/contracts';
import { AgentTransportError } from './agent-transport.js';
import type { AgentTransport } from './agent-transport.js';
import { SseParser } from './sse.js';

/** Options of {@link httpAgentTransport}. */
export interface HttpAgentTransportOptions {
  /** The agent service's base URL; runs are POSTed to `${url}/runs`. */
  url: string;
  /** Sent as `Authorization: Bearer <credential>`; a function is called for every request. */
  credential: string | (() => string | Promise<string>);
  /** Injected fetch (default: the global one). */
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
  const base = options.url.replace(/\/+$/, '');
  const fetchImpl = options.fetch ?? fetch;
  const connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
  const maxEventLength = options.maxEventLength ?? 1 << 20;
  const cancelTimeoutMs = options.cancelTimeoutMs ?? 5_000;
  const credential = async () =>
    typeof options.credential === 'function' ? await options.credential() : options.credential;

  async function* run(request: RunRequest, { signal }: { signal: AbortSignal }): AsyncGenerator<AgentEvent> {
    const controller = new AbortController();
    const onAbort = () => controller.abort(signal.reason);
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
    const connectTimer = setTimeout(
      () => controller.abort(new Error(`no response within ${connectTimeoutMs} ms`)),
      connectTimeoutMs,
    );
    try {
      let response: Response;
      try {
        response = await fetchImpl(`${base}/runs`, {
          method: 'POST',
          headers: {
            authorization: `Bearer ${await credential()}`,
            'content-type': 'application/json',
            accept: 'text/event-stream',
          },
          body: JSON.stringify(request),
          signal: controller.signal,
        });
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
      if (!response.ok) {
        const detail = await readSome(response);
        throw new AgentTransportError(
          'agent_unreachable',
          `the agent answered HTTP ${response.status}${detail ? `: ${detail}` : ''}`,
        );
      }
      const type = response.headers.get('content-type') ?? '';
      if (!type.toLowerCase().startsWith('text/event-stream') || !response.body) {
        await response.body?.cancel().catch(() => {});
        throw new AgentTransportError(
          'agent_stream_invalid',
          `the agent answered with content-type "${type.slice(0, 100)}", not text/event-stream`,
        );
      }
      const reader = response.body.getReader();
      const decoder = new TextDecoder('utf-8', { fatal: true });
      const parser = new SseParser(maxEventLength);
      const parsePayload = payloadParser();
      try {
        for (;;) {
          let chunk: ReadableStreamReadResult<Uint8Array>;
          try {
            chunk = await reader.read();
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
          for (const payload of parser.push(text)) yield parsePayload(payload);
          if (chunk.done) return;
        }
      } finally {
        reader.cancel().catch(() => {});
      }
    } finally {
      signal.removeEventListener('abort', onAbort);
      // Frees the connection whichever way the stream ended.
      controller.abort();
    }
  }

  return {
    run,
    async cancel(runId: string): Promise<void> {
      try {
        const response = await fetchImpl(`${base}/runs/${encodeURIComponent(runId)}`, {
          method: 'DELETE',
          headers: { authorization: `Bearer ${await credential()}` },
          signal: AbortSignal.timeout(cancelTimeoutMs),
        });
        await response.body?.cancel().catch(() => {});
      } catch {
        // Best effort: the aborted stream already tells the agent to stop.
      }
    },
  };
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

async function readSome(response: Response): Promise<string> {
  // Only the first chunk: an error body of any size must not be buffered whole.
  const reader = response.body?.getReader();
  if (!reader) return '';
  try {
    const first = await reader.read();
    const text = first.done ? '' : new TextDecoder().decode(first.value.subarray(0, 400));
    return text.slice(0, 200).replace(/\s+/g, ' ').trim();
  } catch {
    return '';
  } finally {
    reader.cancel().catch(() => {});
  }
}

function describe(cause: unknown): string {
  if (cause instanceof Error) {
    const inner = cause.cause instanceof Error ? ` (${cause.cause.message})` : '';
    return `${cause.message}${inner}`;
  }
  return String(cause);
}
