import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { AgentRunnerError } from './errors.js';

/** Token counts a scripted Responses API answer reports in `usage`. */
export interface FakeUsage {
  input: number;
  output: number;
}

/** One scripted model turn: what the fake server answers to the next model request. */
export type FakeTurn =
  | {
      /** An assistant text message. */
      type: 'text';
      text: string;
      /** Size of each streamed delta in characters (default 8). */
      chunkSize?: number;
      /** Delay between deltas in ms (default 0): a slow stream. */
      delayMs?: number;
      /** Token usage this response reports (Responses API; default 1 input, 1 output). */
      usage?: FakeUsage;
    }
  | {
      /** One or more function calls; their arguments are streamed in deltas. */
      type: 'tool_call';
      calls: { name: string; arguments: unknown; callId?: string }[];
      /** Assistant text streamed before the calls, in the same response. */
      text?: string;
      /** Size of each streamed text and arguments delta in characters (default 8). */
      chunkSize?: number;
      /** Delay before the response completes, in ms (default 0). */
      delayMs?: number;
      /** Token usage this response reports (Responses API; default 1 input, 1 output). */
      usage?: FakeUsage;
    }
  | {
      /**
       * A response cut short: Responses API `response.incomplete` (status `incomplete` with
       * `incomplete_details.reason`), Chat Completions `finish_reason: 'length'` or `'content_filter'`.
       */
      type: 'incomplete';
      /** The text produced before the cut. */
      text: string;
      /** Why it stopped (default `max_output_tokens`). */
      reason?: 'max_output_tokens' | 'content_filter';
      /** Size of each streamed delta in characters (default 8). */
      chunkSize?: number;
    }
  | {
      /** Answer the HTTP request itself with an error status (e.g. 500) and an OpenAI error body. */
      type: 'http_error';
      status: number;
      message?: string;
    }
  | {
      /**
       * The model fails after it started: Responses API `response.failed` (status `failed` with an `error`; a
       * non-streaming request gets that response object with HTTP 200), Chat Completions an error chunk
       * (non-streaming: HTTP 500).
       */
      type: 'response_failed';
      message?: string;
      /** Text deltas sent before the failure. */
      textBefore?: string;
    }
  | {
      /**
       * A stream that breaks with an error event: Responses API `error` event, Chat Completions an error chunk;
       * a non-streaming request gets HTTP 500 with the error.
       */
      type: 'stream_error';
      message?: string;
      /** The error's `code` (default `server_error`). */
      code?: string;
      /** Text deltas sent before the error. */
      textBefore?: string;
    };

/** A model request as the fake server received it. */
export interface CapturedModelRequest {
  api: 'responses' | 'chat_completions';
  headers: Record<string, string | string[] | undefined>;
  body: Record<string, unknown>;
}

/** A compaction request as the fake server received it (`POST /v1/responses/compact`). */
export interface CapturedCompactRequest {
  headers: Record<string, string | string[] | undefined>;
  body: Record<string, unknown>;
}

/** A trace ingest request as the fake server received it (`POST /v1/traces/ingest`). */
export interface CapturedTraceIngest {
  headers: Record<string, string | string[] | undefined>;
  body: { data: Record<string, unknown>[] };
}

/** Options of {@link createFakeOpenAIServer}. */
export interface FakeOpenAIServerOptions {
  /** Turns answered in order, one per model request. */
  turns?: FakeTurn[];
  /**
   * Picks the turn for a request when the queue is empty (e.g. by looking at the input). Without it, a
   * request with no scripted turn gets HTTP 500 "no scripted turn", so a test that expects fewer model
   * calls fails loudly.
   */
  respond?: (request: CapturedModelRequest) => FakeTurn | undefined;
  /** Largest accepted request body in bytes (default 8 MiB); larger gets 413. */
  maxBodyBytes?: number;
  /** Most requests and trace ingests kept for inspection (default 1000 each); older ones are dropped. */
  maxCaptured?: number;
  /** Status the trace ingest endpoint answers with (default 200). */
  ingestStatus?: number;
  /** Called right after each streamed text delta is written (index within its stream); for latency benchmarks. */
  onDeltaWritten?: (index: number) => void;
}

/** A running fake OpenAI server. */
export interface FakeOpenAIServer {
  /** Base URL for the `openai` client, ending in `/v1`. */
  readonly baseURL: string;
  /** The trace ingest endpoint, for `OpenAITracingExporter({ endpoint })`. */
  readonly tracesEndpoint: string;
  /** Model requests received, oldest first. */
  readonly requests: CapturedModelRequest[];
  /** Trace ingest requests received, oldest first. */
  readonly traceIngests: CapturedTraceIngest[];
  /** Compaction requests received (`POST /v1/responses/compact`), oldest first. */
  readonly compactRequests: CapturedCompactRequest[];
  /** Appends turns to the script. */
  enqueue(...turns: FakeTurn[]): void;
  /** Every ingested trace or span item, flattened. */
  traceItems(): Record<string, unknown>[];
  /** Resolves once `predicate` holds for the ingested items (checked on each ingest), or rejects after `timeoutMs`. */
  waitForTraceItems(
    predicate: (items: Record<string, unknown>[]) => boolean,
    timeoutMs?: number,
  ): Promise<void>;
  /** Number of model responses still open (streams, and non-streaming answers not yet sent). */
  openStreams(): number;
  close(): Promise<void>;
}

type Json = Record<string, unknown>;

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal.aborted || ms <= 0) return resolve();
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => (clearTimeout(t), resolve()), { once: true });
  });

function chunks(text: string, size: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < text.length; i += size) out.push(text.slice(i, i + size));
  return out;
}

const unixNow = () => Math.floor(Date.now() / 1000);
const argumentsText = (value: unknown) => (typeof value === 'string' ? value : JSON.stringify(value ?? {}));
const isRecord = (value: unknown): value is Json =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/** Writes SSE text to a response, waiting for `drain` when the socket's buffer is full. */
class SseWriter {
  constructor(private readonly res: ServerResponse) {}

  get open() {
    return !this.res.writableEnded && !this.res.destroyed;
  }

  /** Returns a promise only when the caller must wait before writing more. */
  write(text: string): Promise<void> | undefined {
    if (!this.open || this.res.write(text)) return undefined;
    return new Promise<void>((resolve) => {
      const done = () => {
        this.res.off('drain', done);
        this.res.off('close', done);
        resolve();
      };
      this.res.on('drain', done);
      this.res.on('close', done);
    });
  }
}

/** How a scripted turn ended: the body of a non-streaming answer, or an error for HTTP 500. */
type TurnResult = { kind: 'body'; body: Json } | { kind: 'error'; message: string; code: string };

interface PlayContext {
  n: number;
  body: Json;
  /** Null for a non-streaming request: nothing is written until the turn is over. */
  sse: SseWriter | null;
  signal: AbortSignal;
  onDeltaWritten: ((index: number) => void) | undefined;
}

const responsesUsage = (usage: FakeUsage = { input: 1, output: 1 }) => ({
  input_tokens: usage.input,
  input_tokens_details: { cached_tokens: 0, cache_write_tokens: 0 },
  output_tokens: usage.output,
  output_tokens_details: { reasoning_tokens: 0 },
  total_tokens: usage.input + usage.output,
});

/** The request's function tools as the Responses API echoes them in a response object. */
function echoedTools(tools: unknown): Json[] {
  if (!Array.isArray(tools)) return [];
  return tools.filter(isRecord).flatMap((t) =>
    t.type === 'function' && typeof t.name === 'string'
      ? [
          {
            type: 'function',
            name: t.name,
            description: typeof t.description === 'string' ? t.description : null,
            parameters: isRecord(t.parameters) ? t.parameters : null,
            strict: typeof t.strict === 'boolean' ? t.strict : null,
          },
        ]
      : [],
  );
}

function echoedToolChoice(choice: unknown): unknown {
  if (choice === 'none' || choice === 'auto' || choice === 'required') return choice;
  if (isRecord(choice) && choice.type === 'function' && typeof choice.name === 'string')
    return { type: 'function', name: choice.name };
  return 'auto';
}

/** A response object with every field the API's `Response` schema requires, echoing the request's settings. */
function newResponse(n: number, body: Json): Json {
  const metadata =
    isRecord(body.metadata) && Object.values(body.metadata).every((v) => typeof v === 'string');
  return {
    id: `resp_${n}`,
    object: 'response',
    created_at: unixNow(),
    status: 'in_progress',
    background: false,
    completed_at: null,
    error: null,
    incomplete_details: null,
    instructions: typeof body.instructions === 'string' ? body.instructions : null,
    max_output_tokens: Number.isInteger(body.max_output_tokens) ? body.max_output_tokens : null,
    model: typeof body.model === 'string' ? body.model : 'fake-model',
    output: [],
    parallel_tool_calls: typeof body.parallel_tool_calls === 'boolean' ? body.parallel_tool_calls : true,
    previous_response_id: typeof body.previous_response_id === 'string' ? body.previous_response_id : null,
    reasoning: { effort: null, summary: null },
    service_tier: 'default',
    temperature: typeof body.temperature === 'number' ? body.temperature : 1,
    text: { format: { type: 'text' } },
    tool_choice: echoedToolChoice(body.tool_choice),
    tools: echoedTools(body.tools),
    top_p: typeof body.top_p === 'number' ? body.top_p : 1,
    truncation: 'disabled',
    metadata: metadata ? body.metadata : {},
  };
}

const TERMINAL_STATUS = {
  'response.completed': 'completed',
  'response.failed': 'failed',
  'response.incomplete': 'incomplete',
} as const;

/**
 * One Responses API answer: emits the stream events in the API's order, each with its `sequence_number`, and
 * keeps the response object they describe.
 */
class ResponsesPlayer {
  private seq = 0;
  private readonly response: Json;
  private readonly output: Json[] = [];

  constructor(private readonly ctx: PlayContext) {
    this.response = newResponse(ctx.n, ctx.body);
  }

  private snapshot(): Json {
    return { ...this.response, output: [...this.output] };
  }

  private event(type: string, fields: Json) {
    if (!this.ctx.sse) return undefined;
    const data = JSON.stringify({ type, ...fields, sequence_number: this.seq++ });
    return this.ctx.sse.write(`event: ${type}\ndata: ${data}\n\n`);
  }

  async start() {
    await this.event('response.created', { response: this.snapshot() });
    await this.event('response.in_progress', { response: this.snapshot() });
  }

  /**
   * Streams an assistant message. `end` is the item's final status, or `cut` to stop after the deltas (the
   * response then fails). Returns false when the client went away.
   */
  async message(text: string, size: number, delayMs: number, end: 'completed' | 'incomplete' | 'cut') {
    const { sse, signal, onDeltaWritten } = this.ctx;
    const outputIndex = this.output.length;
    const id = `msg_${this.ctx.n}`;
    const part = { type: 'output_text', text: '', annotations: [], logprobs: [] };
    const item = { id, type: 'message', role: 'assistant', status: 'in_progress', content: [] as Json[] };
    this.output.push(item);
    await this.event('response.output_item.added', { output_index: outputIndex, item });
    await this.event('response.content_part.added', {
      item_id: id,
      output_index: outputIndex,
      content_index: 0,
      part,
    });
    item.content.push(part);
    // The hot path of benchmarks: one preformatted prefix, only the delta itself is serialised.
    const type = 'response.output_text.delta';
    const prefix = `event: ${type}\ndata: {"type":"${type}","item_id":${JSON.stringify(id)},"output_index":${outputIndex},"content_index":0,"delta":`;
    let index = 0;
    for (const delta of chunks(text, Math.max(1, size))) {
      if (signal.aborted) return false;
      part.text += delta;
      if (sse) {
        const wait = sse.write(
          `${prefix}${JSON.stringify(delta)},"logprobs":[],"sequence_number":${this.seq++}}\n\n`,
        );
        onDeltaWritten?.(index++);
        if (wait) await wait;
      }
      if (delayMs > 0) await sleep(delayMs, signal);
    }
    if (signal.aborted) return false;
    if (end === 'cut') {
      item.status = 'incomplete';
      return true;
    }
    const at = { item_id: id, output_index: outputIndex, content_index: 0 };
    await this.event('response.output_text.done', { ...at, text: part.text, logprobs: [] });
    await this.event('response.content_part.done', { ...at, part });
    item.status = end;
    await this.event('response.output_item.done', { output_index: outputIndex, item });
    return true;
  }

  /** Streams a function call with its arguments in deltas. Returns false when the client went away. */
  async functionCall(call: { name: string; arguments: unknown; callId?: string }, i: number, size: number) {
    const { n, signal } = this.ctx;
    const outputIndex = this.output.length;
    const args = argumentsText(call.arguments);
    const id = `fc_${n}_${i}`;
    const item = {
      id,
      type: 'function_call',
      call_id: call.callId ?? `call_${n}_${i}`,
      name: call.name,
      arguments: '',
      status: 'in_progress',
    };
    this.output.push(item);
    await this.event('response.output_item.added', { output_index: outputIndex, item });
    for (const delta of chunks(args, Math.max(1, size))) {
      if (signal.aborted) return false;
      item.arguments += delta;
      await this.event('response.function_call_arguments.delta', {
        item_id: id,
        output_index: outputIndex,
        delta,
      });
    }
    await this.event('response.function_call_arguments.done', {
      item_id: id,
      output_index: outputIndex,
      name: call.name,
      arguments: args,
    });
    item.status = 'completed';
    await this.event('response.output_item.done', { output_index: outputIndex, item });
    return true;
  }

  /** Ends the response with its terminal event and returns the final response object. */
  async finish(
    type: keyof typeof TERMINAL_STATUS,
    fields: Json = {},
    usage?: FakeUsage,
  ): Promise<TurnResult> {
    Object.assign(this.response, fields, {
      status: TERMINAL_STATUS[type],
      completed_at: type === 'response.completed' ? unixNow() : null,
      usage: responsesUsage(usage),
    });
    const response = this.snapshot();
    await this.event(type, { response });
    return { kind: 'body', body: response };
  }

  /** Ends the stream with an `error` event. */
  async error(message: string, code: string): Promise<TurnResult> {
    await this.event('error', { code, message, param: null });
    return { kind: 'error', message, code };
  }
}

/** Plays a turn on the Responses API. Returns null when the client went away. */
async function playResponses(turn: FakeTurn, ctx: PlayContext): Promise<TurnResult | null> {
  const p = new ResponsesPlayer(ctx);
  await p.start();
  switch (turn.type) {
    case 'text':
      if (!(await p.message(turn.text, turn.chunkSize ?? 8, turn.delayMs ?? 0, 'completed'))) return null;
      return p.finish('response.completed', {}, turn.usage);
    case 'incomplete':
      if (!(await p.message(turn.text, turn.chunkSize ?? 8, 0, 'incomplete'))) return null;
      return p.finish('response.incomplete', {
        incomplete_details: { reason: turn.reason ?? 'max_output_tokens' },
      });
    case 'tool_call': {
      const size = turn.chunkSize ?? 8;
      if (turn.text && !(await p.message(turn.text, size, 0, 'completed'))) return null;
      for (const [i, call] of turn.calls.entries()) if (!(await p.functionCall(call, i, size))) return null;
      if (turn.delayMs) await sleep(turn.delayMs, ctx.signal);
      if (ctx.signal.aborted) return null;
      return p.finish('response.completed', {}, turn.usage);
    }
    case 'response_failed':
      if (turn.textBefore && !(await p.message(turn.textBefore, 8, 0, 'cut'))) return null;
      return p.finish('response.failed', {
        error: { code: 'server_error', message: turn.message ?? 'scripted response.failed' },
      });
    case 'stream_error':
      if (turn.textBefore && !(await p.message(turn.textBefore, 8, 0, 'cut'))) return null;
      return p.error(turn.message ?? 'scripted stream error', turn.code ?? 'server_error');
    case 'http_error':
      throw new Error('http_error turns are answered before a stream starts');
  }
}

/** Plays a turn on Chat Completions: chunks when streaming, one `chat.completion` object otherwise. */
async function playChat(turn: FakeTurn, ctx: PlayContext): Promise<TurnResult | null> {
  const { n, body, sse, signal, onDeltaWritten } = ctx;
  const id = `chatcmpl_${n}`;
  const created = unixNow();
  const model = typeof body.model === 'string' ? body.model : 'fake-model';
  const head = { id, object: 'chat.completion.chunk', created, model };
  const chunk = (delta: Json, finish: string | null = null) =>
    sse?.write(
      `data: ${JSON.stringify({ ...head, choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }] })}\n\n`,
    );
  const contentPrefix = `data: ${JSON.stringify(head).slice(0, -1)},"choices":[{"index":0,"delta":{"content":`;
  let content: string | null = null;
  const streamText = async (text: string, size: number, delayMs: number) => {
    content = '';
    let index = 0;
    for (const delta of chunks(text, Math.max(1, size))) {
      if (signal.aborted) return false;
      content += delta;
      if (sse) {
        const wait = sse.write(
          `${contentPrefix}${JSON.stringify(delta)}},"logprobs":null,"finish_reason":null}]}\n\n`,
        );
        onDeltaWritten?.(index++);
        if (wait) await wait;
      }
      if (delayMs > 0) await sleep(delayMs, signal);
    }
    return !signal.aborted;
  };
  const usage = {
    prompt_tokens: 1,
    completion_tokens: 1,
    total_tokens: 2,
    prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
    completion_tokens_details: {
      reasoning_tokens: 0,
      audio_tokens: 0,
      accepted_prediction_tokens: 0,
      rejected_prediction_tokens: 0,
    },
  };
  const finish = async (reason: string, toolCalls?: Json[]): Promise<TurnResult> => {
    if (sse) {
      await chunk({}, reason);
      const options = body.stream_options;
      if (isRecord(options) && options.include_usage === true)
        await sse.write(`data: ${JSON.stringify({ ...head, choices: [], usage })}\n\n`);
      await sse.write('data: [DONE]\n\n');
    }
    const message: Json = { role: 'assistant', content, refusal: null, annotations: [] };
    if (toolCalls) message.tool_calls = toolCalls;
    return {
      kind: 'body',
      body: {
        id,
        object: 'chat.completion',
        created,
        model,
        choices: [{ index: 0, message, logprobs: null, finish_reason: reason }],
        usage,
        service_tier: 'default',
      },
    };
  };
  const fail = async (message: string, code: string): Promise<TurnResult> => {
    await sse?.write(
      `data: ${JSON.stringify({ error: { message, type: 'server_error', param: null, code } })}\n\n`,
    );
    return { kind: 'error', message, code };
  };

  switch (turn.type) {
    case 'text':
      await chunk({ role: 'assistant', content: '', refusal: null });
      if (!(await streamText(turn.text, turn.chunkSize ?? 8, turn.delayMs ?? 0))) return null;
      return finish('stop');
    case 'incomplete':
      await chunk({ role: 'assistant', content: '', refusal: null });
      if (!(await streamText(turn.text, turn.chunkSize ?? 8, 0))) return null;
      return finish(turn.reason === 'content_filter' ? 'content_filter' : 'length');
    case 'tool_call': {
      const size = turn.chunkSize ?? 8;
      await chunk({ role: 'assistant', content: turn.text ? '' : null, refusal: null });
      if (turn.text && !(await streamText(turn.text, size, 0))) return null;
      const calls = turn.calls.map((c, i) => ({
        id: c.callId ?? `call_${n}_${i}`,
        type: 'function',
        function: { name: c.name, arguments: argumentsText(c.arguments) },
      }));
      for (const [i, call] of calls.entries()) {
        await chunk({
          tool_calls: [
            {
              index: i,
              id: call.id,
              type: 'function',
              function: { name: call.function.name, arguments: '' },
            },
          ],
        });
        for (const delta of chunks(call.function.arguments, Math.max(1, size))) {
          if (signal.aborted) return null;
          await chunk({ tool_calls: [{ index: i, function: { arguments: delta } }] });
        }
      }
      if (turn.delayMs) await sleep(turn.delayMs, signal);
      if (signal.aborted) return null;
      return finish('tool_calls', calls);
    }
    case 'response_failed':
    case 'stream_error': {
      await chunk({ role: 'assistant', content: '', refusal: null });
      if (turn.textBefore && !(await streamText(turn.textBefore, 8, 0))) return null;
      const fallback = turn.type === 'response_failed' ? 'scripted stream failure' : 'scripted stream error';
      return fail(turn.message ?? fallback, (turn.type === 'stream_error' && turn.code) || 'server_error');
    }
    case 'http_error':
      throw new Error('http_error turns are answered before a stream starts');
  }
}

/** Prefix of the fake's compaction items' `encrypted_content`, followed by how many items it replaced. */
export const FAKE_COMPACTION_PREFIX = 'fake-compaction:';

/**
 * The compact endpoint's answer (`CompactResource`): like the API, every user message of the input is kept (as a
 * `Message` with `input_text` parts) and everything else is replaced by one `compaction` item, whose
 * `encrypted_content` here is readable: {@link FAKE_COMPACTION_PREFIX} and the number of items replaced. A
 * request without `input` items (e.g. `previous_response_id` only) gets a 400 string: the fake keeps no responses.
 */
function compactResource(body: Json, n: number): Json | string {
  if (typeof body.model !== 'string' || body.model === '') return 'model is required';
  const input = typeof body.input === 'string' ? [{ role: 'user', content: body.input }] : body.input;
  if (!Array.isArray(input))
    return 'the fake server compacts `input` items only (it keeps no responses for previous_response_id)';
  const output: Json[] = [];
  let replaced = 0;
  input.forEach((item: unknown, i) => {
    if (isRecord(item) && (item.type ?? 'message') === 'message' && item.role === 'user') {
      const parts =
        typeof item.content === 'string' ? [{ type: 'input_text', text: item.content }] : item.content;
      const content = Array.isArray(parts)
        ? parts
            .filter(isRecord)
            .map((p) => ({ type: 'input_text', text: typeof p.text === 'string' ? p.text : '' }))
        : [];
      output.push({ type: 'message', id: `msg_cmp_${n}_${i}`, status: 'completed', role: 'user', content });
    } else replaced++;
  });
  output.push({
    type: 'compaction',
    id: `cmp_${n}`,
    encrypted_content: `${FAKE_COMPACTION_PREFIX}${replaced}`,
  });
  return {
    id: `resp_cmp_${n}`,
    object: 'response.compaction',
    output,
    created_at: unixNow(),
    usage: responsesUsage(),
  };
}

/**
 * Starts a local HTTP server on 127.0.0.1 that speaks the OpenAI wire format as the official OpenAPI description
 * defines it, for the real `openai` client and `@openai/agents`: the Responses API (`POST /v1/responses`, and
 * `POST /v1/responses/compact` answered by a deterministic compaction), Chat Completions (`POST /v1/chat/completions`), streaming and not, plus trace ingest capture
 * (`POST /v1/traces/ingest`). Answers come from a script of {@link FakeTurn}s. A streamed response carries the
 * full event sequence (`response.created`, `response.in_progress`, output items with their content parts and
 * text or arguments deltas, then `response.completed`, `response.failed` or `response.incomplete`).
 *
 * @example
 * const fake = await createFakeOpenAIServer({ turns: [{ type: 'text', text: 'Hello!' }] });
 * const client = new OpenAI({ apiKey: 'test', baseURL: fake.baseURL, maxRetries: 0 });
 * // ... run your agent against it ...
 * await fake.close();
 */
export async function createFakeOpenAIServer(
  options: FakeOpenAIServerOptions = {},
): Promise<FakeOpenAIServer> {
  const queue: FakeTurn[] = [...(options.turns ?? [])];
  const requests: CapturedModelRequest[] = [];
  const traceIngests: CapturedTraceIngest[] = [];
  const compactRequests: CapturedCompactRequest[] = [];
  const maxBody = options.maxBodyBytes ?? 8 * 1024 * 1024;
  const maxCaptured = options.maxCaptured ?? 1000;
  const waiters = new Set<() => void>();
  const streams = new Set<ServerResponse>();
  let seq = 0;

  const capture = <T>(list: T[], item: T) => {
    list.push(item);
    if (list.length > maxCaptured) list.shift();
  };

  const readBody = (req: IncomingMessage): Promise<string | null> =>
    new Promise((resolve, reject) => {
      const parts: Buffer[] = [];
      let size = 0;
      req.on('data', (c: Buffer) => {
        size += c.length;
        if (size > maxBody) {
          resolve(null);
          req.resume();
          return;
        }
        parts.push(c);
      });
      req.on('end', () => resolve(size > maxBody ? null : Buffer.concat(parts).toString('utf8')));
      req.on('error', reject);
    });

  const sendJson = (res: ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };
  /** An error body as the API's `ErrorResponse` schema defines it. */
  const openAIError = (res: ServerResponse, status: number, message: string, code: string | null = null) =>
    sendJson(res, status, {
      error: { message, type: status >= 500 ? 'server_error' : 'invalid_request_error', param: null, code },
    });

  const server: Server = createServer((req, res) => {
    void handle(req, res).catch((error: unknown) => {
      if (!res.headersSent) openAIError(res, 500, `fake server failure: ${String(error)}`);
      else res.destroy();
    });
  });

  async function handle(req: IncomingMessage, res: ServerResponse) {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    if (req.method !== 'POST') return openAIError(res, 405, 'only POST is supported by the fake server');
    const text = await readBody(req);
    if (text === null) return openAIError(res, 413, 'request body too large');
    let body: Json;
    try {
      const parsed: unknown = JSON.parse(text);
      if (!isRecord(parsed)) throw new Error('not an object');
      body = parsed;
    } catch {
      return openAIError(res, 400, 'request body is not a JSON object');
    }
    if (url.pathname === '/v1/responses/compact') {
      capture(compactRequests, { headers: req.headers, body });
      const answer = compactResource(body, ++seq);
      return typeof answer === 'string' ? openAIError(res, 400, answer) : sendJson(res, 200, answer);
    }
    if (url.pathname === '/v1/traces/ingest') {
      const data = Array.isArray(body.data) ? (body.data as Json[]) : [];
      capture(traceIngests, { headers: req.headers, body: { data } });
      for (const w of [...waiters]) w();
      return sendJson(res, options.ingestStatus ?? 200, {});
    }
    const play =
      url.pathname === '/v1/responses'
        ? ({ api: 'responses', run: playResponses } as const)
        : url.pathname === '/v1/chat/completions'
          ? ({ api: 'chat_completions', run: playChat } as const)
          : null;
    if (!play) return openAIError(res, 404, `fake server: unknown path ${url.pathname}`);
    const captured: CapturedModelRequest = { api: play.api, headers: req.headers, body };
    capture(requests, captured);
    const turn = queue.shift() ?? options.respond?.(captured);
    if (!turn) return openAIError(res, 500, 'fake server: no scripted turn left');
    if (turn.type === 'http_error')
      return openAIError(res, turn.status, turn.message ?? `scripted HTTP ${turn.status}`);

    const abort = new AbortController();
    res.on('close', () => abort.abort());
    streams.add(res);
    res.on('close', () => streams.delete(res));
    const streaming = body.stream === true;
    if (streaming)
      res.writeHead(200, {
        'content-type': 'text/event-stream',
        'cache-control': 'no-cache',
        connection: 'keep-alive',
      });
    const result = await play.run(turn, {
      n: ++seq,
      body,
      sse: streaming ? new SseWriter(res) : null,
      signal: abort.signal,
      onDeltaWritten: options.onDeltaWritten,
    });
    if (streaming || !result) {
      if (!res.writableEnded) res.end();
    } else if (result.kind === 'body') sendJson(res, 200, result.body);
    else openAIError(res, 500, result.message, result.code);
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const baseURL = `http://127.0.0.1:${port}/v1`;

  const traceItems = () => traceIngests.flatMap((t) => t.body.data);
  return {
    baseURL,
    tracesEndpoint: `${baseURL}/traces/ingest`,
    requests,
    traceIngests,
    compactRequests,
    enqueue: (...turns) => void queue.push(...turns),
    traceItems,
    openStreams: () => streams.size,
    waitForTraceItems(predicate, timeoutMs = 10_000) {
      return new Promise<void>((resolve, reject) => {
        if (predicate(traceItems())) return resolve();
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(
            new AgentRunnerError('fake_server_error', `trace items did not arrive within ${timeoutMs} ms`),
          );
        }, timeoutMs);
        const check = () => {
          if (!predicate(traceItems())) return;
          clearTimeout(timer);
          waiters.delete(check);
          resolve();
        };
        waiters.add(check);
      });
    },
    close() {
      for (const s of streams) s.destroy();
      return new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}
