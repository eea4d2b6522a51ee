import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { AgentRunnerError } from './errors.js';

/** One scripted model turn: what the fake server answers to the next model request. */
export type FakeTurn =
  | {
      /** Stream an assistant text message. */
      type: 'text';
      text: string;
      /** Size of each streamed delta in characters (default 8). */
      chunkSize?: number;
      /** Delay between deltas in ms (default 0): a slow stream. */
      delayMs?: number;
    }
  | {
      /** Ask for one or more function calls. */
      type: 'tool_call';
      calls: { name: string; arguments: unknown; callId?: string }[];
      /** Assistant text streamed before the calls, in the same response. */
      text?: string;
      /** Delay before the stream completes, in ms (default 0). */
      delayMs?: number;
    }
  | {
      /** Answer the HTTP request itself with an error status (e.g. 500) and an OpenAI error body. */
      type: 'http_error';
      status: number;
      message?: string;
    }
  | {
      /** Start streaming normally, then end with `response.failed` (Chat Completions: an error chunk). */
      type: 'response_failed';
      message?: string;
      /** Text deltas sent before the failure. */
      textBefore?: string;
    };

/** A model request as the fake server received it. */
export interface CapturedModelRequest {
  api: 'responses' | 'chat_completions';
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
  /** Called right after each text delta is written (index within its stream); for latency benchmarks. */
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
  /** Appends turns to the script. */
  enqueue(...turns: FakeTurn[]): void;
  /** Every ingested trace or span item, flattened. */
  traceItems(): Record<string, unknown>[];
  /** Resolves once `predicate` holds for the ingested items (checked on each ingest), or rejects after `timeoutMs`. */
  waitForTraceItems(
    predicate: (items: Record<string, unknown>[]) => boolean,
    timeoutMs?: number,
  ): Promise<void>;
  /** Number of model streams still open. */
  openStreams(): number;
  close(): Promise<void>;
}

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

const USAGE = {
  input_tokens: 1,
  output_tokens: 1,
  total_tokens: 2,
  input_tokens_details: { cached_tokens: 0 },
  output_tokens_details: { reasoning_tokens: 0 },
};

/**
 * Starts a local HTTP server on 127.0.0.1 that speaks enough of the OpenAI wire format for the real `openai`
 * client and `@openai/agents`: streaming Responses API (`POST /v1/responses`), streaming Chat Completions
 * (`POST /v1/chat/completions`) and trace ingest capture (`POST /v1/traces/ingest`). Answers come from a
 * script of {@link FakeTurn}s.
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
  const openAIError = (res: ServerResponse, status: number, message: string) =>
    sendJson(res, status, { error: { message, type: 'server_error', param: null, code: null } });

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
    let body: Record<string, unknown>;
    try {
      body = JSON.parse(text) as Record<string, unknown>;
    } catch {
      return openAIError(res, 400, 'request body is not JSON');
    }
    if (url.pathname === '/v1/traces/ingest') {
      const data = Array.isArray(body.data) ? (body.data as Record<string, unknown>[]) : [];
      capture(traceIngests, { headers: req.headers, body: { data } });
      for (const w of [...waiters]) w();
      return sendJson(res, options.ingestStatus ?? 200, {});
    }
    const api =
      url.pathname === '/v1/responses'
        ? 'responses'
        : url.pathname === '/v1/chat/completions'
          ? 'chat_completions'
          : null;
    if (!api) return openAIError(res, 404, `fake server: unknown path ${url.pathname}`);
    const captured: CapturedModelRequest = { api, headers: req.headers, body };
    capture(requests, captured);
    const turn = queue.shift() ?? options.respond?.(captured);
    if (!turn) return openAIError(res, 500, 'fake server: no scripted turn left');
    if (turn.type === 'http_error')
      return openAIError(res, turn.status, turn.message ?? `scripted HTTP ${turn.status}`);
    if (body.stream !== true)
      return openAIError(res, 400, 'fake server: only streaming requests are supported');

    const abort = new AbortController();
    res.on('close', () => abort.abort());
    streams.add(res);
    res.on('close', () => streams.delete(res));
    res.writeHead(200, {
      'content-type': 'text/event-stream',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
    });
    const id = ++seq;
    if (api === 'responses') await streamResponses(res, turn, id, abort.signal);
    else await streamChat(res, turn, id, abort.signal);
    if (!res.writableEnded) res.end();
  }

  const write = (res: ServerResponse, data: unknown, event?: string) => {
    if (res.writableEnded || res.destroyed) return;
    res.write(`${event ? `event: ${event}\n` : ''}data: ${JSON.stringify(data)}\n\n`);
  };

  async function streamResponses(res: ServerResponse, turn: FakeTurn, n: number, signal: AbortSignal) {
    const respId = `resp_${n}`;
    const base = {
      id: respId,
      object: 'response',
      created_at: 0,
      model: 'fake-model',
      output: [] as unknown[],
    };
    const ev = (type: string, rest: Record<string, unknown>) => write(res, { type, ...rest }, type);
    ev('response.created', { response: { ...base, status: 'in_progress' } });
    if (turn.type === 'text' || turn.type === 'response_failed') {
      const full = turn.type === 'text' ? turn.text : (turn.textBefore ?? '');
      const msgId = `msg_${n}`;
      ev('response.output_item.added', {
        output_index: 0,
        item: { type: 'message', id: msgId, role: 'assistant', status: 'in_progress', content: [] },
      });
      const size = turn.type === 'text' ? (turn.chunkSize ?? 8) : 8;
      const delay = turn.type === 'text' ? (turn.delayMs ?? 0) : 0;
      let index = 0;
      for (const delta of chunks(full, Math.max(1, size))) {
        if (signal.aborted) return;
        ev('response.output_text.delta', { item_id: msgId, output_index: 0, content_index: 0, delta });
        options.onDeltaWritten?.(index++);
        if (delay > 0) await sleep(delay, signal);
      }
      if (turn.type === 'response_failed') {
        ev('response.failed', {
          response: {
            ...base,
            status: 'failed',
            error: { code: 'server_error', message: turn.message ?? 'scripted response.failed' },
          },
        });
        return;
      }
      const item = {
        type: 'message',
        id: msgId,
        role: 'assistant',
        status: 'completed',
        content: [{ type: 'output_text', text: full, annotations: [] }],
      };
      ev('response.output_item.done', { output_index: 0, item });
      ev('response.completed', { response: { ...base, status: 'completed', output: [item], usage: USAGE } });
      return;
    }
    if (turn.type === 'tool_call') {
      const output = turn.calls.map((c, i) => ({
        type: 'function_call',
        id: `fc_${n}_${i}`,
        call_id: c.callId ?? `call_${n}_${i}`,
        name: c.name,
        arguments: typeof c.arguments === 'string' ? c.arguments : JSON.stringify(c.arguments ?? {}),
        status: 'completed',
      }));
      const all: unknown[] = [];
      if (turn.text) {
        const msgId = `msg_${n}`;
        ev('response.output_item.added', {
          output_index: 0,
          item: { type: 'message', id: msgId, role: 'assistant', status: 'in_progress', content: [] },
        });
        for (const delta of chunks(turn.text, 8))
          ev('response.output_text.delta', { item_id: msgId, output_index: 0, content_index: 0, delta });
        all.push({
          type: 'message',
          id: msgId,
          role: 'assistant',
          status: 'completed',
          content: [{ type: 'output_text', text: turn.text, annotations: [] }],
        });
      }
      all.push(...output);
      output.forEach((item, i) =>
        ev('response.output_item.added', { output_index: i + (turn.text ? 1 : 0), item }),
      );
      if (turn.delayMs) await sleep(turn.delayMs, signal);
      if (signal.aborted) return;
      ev('response.completed', { response: { ...base, status: 'completed', output: all, usage: USAGE } });
    }
  }

  async function streamChat(res: ServerResponse, turn: FakeTurn, n: number, signal: AbortSignal) {
    const base = { id: `chatcmpl_${n}`, object: 'chat.completion.chunk', created: 0, model: 'fake-model' };
    const chunk = (
      delta: Record<string, unknown>,
      finish: string | null = null,
      extra: Record<string, unknown> = {},
    ) => write(res, { ...base, choices: [{ index: 0, delta, finish_reason: finish }], ...extra });
    if (turn.type === 'text' || turn.type === 'response_failed') {
      const full = turn.type === 'text' ? turn.text : (turn.textBefore ?? '');
      const size = turn.type === 'text' ? (turn.chunkSize ?? 8) : 8;
      const delay = turn.type === 'text' ? (turn.delayMs ?? 0) : 0;
      chunk({ role: 'assistant', content: '' });
      let index = 0;
      for (const delta of chunks(full, Math.max(1, size))) {
        if (signal.aborted) return;
        chunk({ content: delta });
        options.onDeltaWritten?.(index++);
        if (delay > 0) await sleep(delay, signal);
      }
      if (turn.type === 'response_failed') {
        write(res, { error: { message: turn.message ?? 'scripted stream failure', type: 'server_error' } });
        return;
      }
      chunk({}, 'stop', { usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 } });
    } else if (turn.type === 'tool_call') {
      if (turn.text) for (const delta of chunks(turn.text, 8)) chunk({ role: 'assistant', content: delta });
      chunk({
        role: 'assistant',
        tool_calls: turn.calls.map((c, i) => ({
          index: i,
          id: c.callId ?? `call_${n}_${i}`,
          type: 'function',
          function: {
            name: c.name,
            arguments: typeof c.arguments === 'string' ? c.arguments : JSON.stringify(c.arguments ?? {}),
          },
        })),
      });
      if (turn.delayMs) await sleep(turn.delayMs, signal);
      if (signal.aborted) return;
      chunk({}, 'tool_calls');
    }
    if (!res.writableEnded) res.write('data: [DONE]\n\n');
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
