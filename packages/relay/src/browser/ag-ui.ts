/**
 * AG-UI over HTTP + SSE for a relay: `createAgUiHandler` (a Fetch-API handler) and `toNodeListener` (the same for
 * Node's `http` / Express). An AG-UI client such as `@ag-ui/client`'s `HttpAgent` then runs Threadline agents.
 * @packageDocumentation
 */
import { IdSchema, LIMITS, safeParse, toContractIssues } from '@threadline/contracts';
import { z } from 'zod';
import { RelayError } from '../errors.js';
import type { RelayErrorCode } from '../errors.js';
import type { Relay } from '../core/relay.js';
import type { Subscription } from '../core/subscription.js';
import { runStream } from './ag-ui-stream.js';

export { toNodeListener } from './node-listener.js';

/** Options of {@link createAgUiHandler}. */
export interface AgUiHandlerOptions {
  /** Who is asking (e.g. from the session cookie); `null` answers 401. */
  authenticate(request: Request): Promise<{ id: string } | null> | { id: string } | null;
  /** Largest request body (`RunAgentInput` carries the client's whole history). Default 1 MiB. */
  maxBodyBytes?: number;
  /** How long the body may take to arrive before 408. Default 10,000 ms. */
  bodyTimeoutMs?: number;
  /** Most messages in the MESSAGES_SNAPSHOT that opens each run (the newest are kept). Default 1,000. */
  maxSnapshotMessages?: number;
  /**
   * Most bytes of the MESSAGES_SNAPSHOT's messages (the newest that fit are kept). Default 4 MiB: AG-UI's
   * client refuses an SSE frame over 10 MiB.
   */
  maxSnapshotBytes?: number;
  /** Interval of SSE comment lines that keep idle proxies from closing the stream; 0 for none. Default 15,000 ms. */
  heartbeatMs?: number;
  /** Cancel the run when the client goes away before it ends (AG-UI's `abortRun()`). Default false. */
  cancelOnDisconnect?: boolean;
  /** Where unexpected failures are reported. Default `console`. */
  logger?: Pick<Console, 'error'>;
}

/** A Fetch-API handler for AG-UI's `POST` with a `RunAgentInput` body. It never throws. */
export type AgUiHandler = (request: Request) => Promise<Response>;

/** Codes the handler answers with besides the relay's own ({@link RelayErrorCode}). */
export type AgUiRequestErrorCode =
  | 'method_not_allowed'
  | 'unsupported_media_type'
  | 'payload_too_large'
  | 'request_timeout'
  | 'invalid_json'
  | 'invalid_input';

const STATUS: Record<AgUiRequestErrorCode | RelayErrorCode, number> = {
  method_not_allowed: 405,
  unsupported_media_type: 415,
  payload_too_large: 413,
  request_timeout: 408,
  invalid_json: 400,
  invalid_input: 400,
  invalid_message: 400,
  unauthorized: 401,
  not_found: 404,
  thread_deleted: 410,
  conflict: 409,
  run_active: 409,
  nothing_to_regenerate: 409,
  run_awaiting_approval: 409,
  approval_not_pending: 409,
  approval_already_decided: 409,
  queue_full: 429,
  too_many_runs: 429,
  rate_limited: 429,
  too_many_subscribers: 503,
  slow_consumer: 503,
  store_error: 503,
  agent_unavailable: 503,
  pubsub_unavailable: 503,
  closed: 503,
  invalid_options: 500,
  internal_error: 500,
};

const TextPartSchema = z.looseObject({ type: z.literal('text'), text: z.string() });
/** What the handler reads of `RunAgentInput` (AG-UI 1.0); everything else is allowed and ignored. */
const RunAgentInputSchema = z.looseObject({
  threadId: IdSchema,
  runId: z.string().min(1).max(LIMITS.maxIdLength),
  parentRunId: z.string().min(1).max(LIMITS.maxIdLength).optional(),
  messages: z.array(
    z.looseObject({
      id: z.string(),
      role: z.string(),
      content: z.unknown().optional(),
    }),
  ),
});

/**
 * Serves AG-UI's HTTP + SSE protocol over a relay. A `POST` with a `RunAgentInput` JSON body sends the last
 * `user` message of `messages` to the thread `threadId` through `relay.send` (its `id` is the idempotency key, the
 * relay's `clientMessageId`: a retry streams the run the first request started) and answers `text/event-stream`:
 * RUN_STARTED (with the input's `runId`), a MESSAGES_SNAPSHOT of the thread before that message, the message as
 * a `user` text message, then the run's events as they are stored (TEXT_MESSAGE_*, TOOL_CALL_START/ARGS/END/RESULT, CUSTOM for state
 * changes), ending with RUN_FINISHED or RUN_ERROR. The run is an ordinary relay run: persisted, sequenced and
 * seen live by every other subscriber of the thread.
 *
 * Refusals are JSON `{ error: { code, message, issues? } }`: 401 `unauthorized`, 404 `not_found` (no such
 * thread, or not the user's), 400 `invalid_json` / `invalid_input` / `invalid_message`, 405, 408, 413, 415,
 * 409 `run_active`, 429 `queue_full`, 503 when the relay cannot take the run. Client-side `tools`, `state`,
 * `context` and `forwardedProps` are ignored: the agent's tools live on the server.
 *
 * @example
 * const agUi = createAgUiHandler(relay, {
 *   authenticate: async (request) => sessions.userOf(request.headers.get('cookie') ?? undefined),
 * });
 * app.post('/api/ag-ui', toNodeListener(agUi)); // or, on a Fetch runtime: export default { fetch: agUi }
 */
export function createAgUiHandler(relay: Relay, options: AgUiHandlerOptions): AgUiHandler {
  if (typeof options?.authenticate !== 'function') {
    throw new RelayError('invalid_options', 'createAgUiHandler needs an authenticate(request) function');
  }
  const maxBodyBytes = intOption(options.maxBodyBytes, 1024 * 1024, 64, 'maxBodyBytes');
  const bodyTimeoutMs = intOption(options.bodyTimeoutMs, 10_000, 1, 'bodyTimeoutMs');
  const maxSnapshotMessages = intOption(options.maxSnapshotMessages, 1_000, 1, 'maxSnapshotMessages');
  const maxSnapshotBytes = intOption(options.maxSnapshotBytes, 4 * 1024 * 1024, 1, 'maxSnapshotBytes');
  const heartbeatMs = intOption(options.heartbeatMs, 15_000, 0, 'heartbeatMs');
  const cancelOnDisconnect = options.cancelOnDisconnect === true;
  const logger = options.logger ?? console;

  async function handle(request: Request): Promise<Response> {
    if (request.method !== 'POST') {
      return refuse('method_not_allowed', 'use POST with a RunAgentInput JSON body', { allow: 'POST' });
    }
    let user: { id: string } | null;
    try {
      user = await options.authenticate(request);
    } catch (error) {
      logger.error('[threadline/relay] ag-ui authenticate() failed:', error);
      return refuse('internal_error', 'authentication failed; try again');
    }
    if (!user || !safeParse(IdSchema, user.id).ok) return refuse('unauthorized', 'sign in first');
    user = { id: user.id };
    const type = request.headers.get('content-type') ?? '';
    if (!/^application\/json\s*(;|$)/i.test(type)) {
      return refuse('unsupported_media_type', 'send JSON with Content-Type: application/json');
    }
    const body = await readBody(request, maxBodyBytes, bodyTimeoutMs);
    if (body instanceof Refusal) return refuse(body.code, body.message);
    let json: unknown;
    try {
      json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(body));
    } catch {
      return refuse('invalid_json', 'the body is not valid UTF-8 JSON');
    }
    const parsed = RunAgentInputSchema.safeParse(json);
    if (!parsed.success) {
      const issues = toContractIssues(parsed.error);
      const first = issues[0];
      return refuse(
        'invalid_input',
        `invalid RunAgentInput${first ? `: ${first.path} ${first.message}` : ''}`,
        {
          issues,
        },
      );
    }
    const input = parsed.data;
    const message = lastUserMessage(input.messages);
    if (message instanceof Refusal) return refuse(message.code, message.message);

    let subscription: Subscription;
    let runId: string;
    try {
      // Subscribed before sending, from the start of the thread: nothing of the run can be missed, and the
      // history before it becomes the snapshot. Replay is paced by this stream, so the subscription is bounded.
      subscription = await relay.subscribe({ user, threadId: input.threadId, afterSeq: 0 });
    } catch (error) {
      return failure(error);
    }
    try {
      ({ runId } = await relay.send({
        user,
        threadId: input.threadId,
        text: message.text,
        clientMessageId: message.id,
      }));
    } catch (error) {
      subscription.close();
      return failure(error);
    }
    const stream = runStream({
      relay,
      user,
      subscription,
      runId,
      input: { threadId: input.threadId, runId: input.runId, parentRunId: input.parentRunId },
      maxSnapshotMessages,
      maxSnapshotBytes,
      heartbeatMs,
      cancelOnDisconnect,
      logger,
    });
    return new Response(stream, {
      status: 200,
      headers: {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-store',
        // Proxies such as nginx buffer responses unless told not to; SSE must flow as it is written.
        'x-accel-buffering': 'no',
      },
    });
  }

  function failure(error: unknown): Response {
    if (error instanceof RelayError) return refuse(error.code, error.message);
    logger.error('[threadline/relay] ag-ui request failed:', error);
    return refuse('internal_error', 'something went wrong on the server; try again');
  }

  return async (request) => {
    try {
      return await handle(request);
    } catch (error) {
      return failure(error);
    }
  };
}

class Refusal {
  constructor(
    readonly code: AgUiRequestErrorCode,
    readonly message: string,
  ) {}
}

function refuse(
  code: AgUiRequestErrorCode | RelayErrorCode,
  message: string,
  extra: { allow?: string; issues?: unknown } = {},
): Response {
  const body = { error: { code, message, ...(extra.issues ? { issues: extra.issues } : {}) } };
  return new Response(JSON.stringify(body), {
    status: STATUS[code],
    headers: {
      'content-type': 'application/json; charset=utf-8',
      'cache-control': 'no-store',
      ...(extra.allow ? { allow: extra.allow } : {}),
    },
  });
}

/** The new user message: the last `user` message of the input, as text. */
function lastUserMessage(
  messages: readonly { id: string; role: string; content?: unknown }[],
): { id: string; text: string } | Refusal {
  let message: { id: string; role: string; content?: unknown } | undefined;
  for (let i = messages.length - 1; i >= 0 && message === undefined; i--) {
    if (messages[i]!.role === 'user') message = messages[i];
  }
  if (message === undefined) return new Refusal('invalid_input', 'messages has no user message to send');
  if (!safeParse(IdSchema, message.id).ok) {
    return new Refusal(
      'invalid_input',
      `the user message's id must be 1-${LIMITS.maxIdLength} letters, digits or _ . : - (it is the idempotency key)`,
    );
  }
  const content = message.content;
  let text: string;
  if (typeof content === 'string') text = content;
  else if (Array.isArray(content) && content.every((p) => TextPartSchema.safeParse(p).success)) {
    text = (content as { text: string }[]).map((p) => p.text).join('\n');
  } else {
    return new Refusal(
      'invalid_input',
      'the user message must have text content (media parts are not supported)',
    );
  }
  // Length and emptiness are the relay's to judge (`invalid_message`), so every transport refuses alike.
  return { id: message.id, text };
}

/** Reads the body within its size and time bounds. */
async function readBody(request: Request, limit: number, timeoutMs: number): Promise<Uint8Array | Refusal> {
  const tooLarge = new Refusal('payload_too_large', `the body may be at most ${limit} bytes`);
  const declared = request.headers.get('content-length');
  if (declared !== null && /^\d+$/.test(declared) && Number(declared) > limit) return tooLarge;
  if (request.body === null) return new Uint8Array(0);
  const reader = request.body.getReader();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), timeoutMs);
  });
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    for (;;) {
      const next = await Promise.race([reader.read(), timeout]);
      if (next === 'timeout') {
        reader.cancel().catch(() => {});
        return new Refusal('request_timeout', `the body did not arrive within ${timeoutMs} ms`);
      }
      if (next.done) break;
      size += next.value.byteLength;
      if (size > limit) {
        reader.cancel().catch(() => {});
        return tooLarge;
      }
      chunks.push(next.value);
    }
  } catch {
    return new Refusal('invalid_input', 'the request body could not be read to the end');
  } finally {
    clearTimeout(timer);
  }
  const out = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

function intOption(value: number | undefined, fallback: number, min: number, name: string): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < min) {
    throw new RelayError('invalid_options', `${name} must be an integer >= ${min}`);
  }
  return value;
}
