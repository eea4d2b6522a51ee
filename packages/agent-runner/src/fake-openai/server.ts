import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { AgentRunnerError } from '../errors.js';
import { playChat } from './chat-completions.js';
import { compactResource } from './compact.js';
import { playResponses } from './responses.js';
import type {
  CapturedCompactRequest,
  CapturedModelRequest,
  CapturedTraceIngest,
  FakeOpenAIServer,
  FakeOpenAIServerOptions,
  FakeTurn,
} from './types.js';
import { SseWriter, isRecord, type Json } from './wire.js';

// The fake server's HTTP side: routing by path, bounded bodies, OpenAI error bodies, the turn script and what
// it captures for a test to inspect.

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
