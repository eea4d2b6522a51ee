import type { AgentEvent, RunRequest } from '@threadline/contracts';
import {
  createRunErrorEvent,
  createRunFinishedEvent,
  createRunStartedEvent,
  createTextMessageChunkEvent,
  parseEvent,
} from '@threadline/contracts';
import { OpenAIProvider } from '@openai/agents';
import OpenAI from 'openai';
import { createRunner, type AgentRunnerOptions } from '../src/index.js';
import type { AgentRunner, AgentRunnerError } from '../src/index.js';

export const SECRET = 'test-secret-that-is-long-enough-0123456789';
export const silent = { info() {}, warn() {}, error() {} };

/**
 * A runner whose model is the fake OpenAI server at `baseURL` (Responses API, no retries), with no tracing, no
 * log output and no settings from the environment.
 */
export function fakeOpenAIRunner(baseURL: string, options: Partial<AgentRunnerOptions> = {}): AgentRunner {
  const client = new OpenAI({ apiKey: 'sk-test', baseURL, maxRetries: 0 });
  return createRunner({
    modelProvider: new OpenAIProvider({ openAIClient: client, useResponses: true }),
    model: 'fake-model',
    tracing: false,
    logger: silent,
    env: {},
    ...options,
  });
}

/** Parses an SSE response body: events (validated against the contract) and comment lines. */
export async function* readSse(res: Response): AsyncGenerator<{ event?: AgentEvent; comment?: string }> {
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  while (true) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let idx: number;
    while ((idx = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, idx);
      buffer = buffer.slice(idx + 2);
      for (const line of block.split('\n')) {
        if (line.startsWith('data: ')) yield { event: parseEvent(JSON.parse(line.slice(6))) };
        else if (line.startsWith(':')) yield { comment: line.slice(1).trim() };
      }
    }
  }
}

export async function collectSse(res: Response): Promise<{ events: AgentEvent[]; comments: string[] }> {
  const events: AgentEvent[] = [];
  const comments: string[] = [];
  for await (const item of readSse(res)) {
    if (item.event) events.push(item.event);
    if (item.comment !== undefined) comments.push(item.comment);
  }
  return { events, comments };
}

export async function collect(iterable: AsyncIterable<AgentEvent>): Promise<AgentEvent[]> {
  const out: AgentEvent[] = [];
  for await (const e of iterable) out.push(e);
  return out;
}

export function runRequest(overrides: Partial<RunRequest> = {}): RunRequest {
  return {
    threadId: 'thread-1',
    runId: `run-${Math.random().toString(36).slice(2)}`,
    user: { id: 'user-1' },
    text: 'Hello',
    tools: { baseUrl: 'http://127.0.0.1:9', token: 'tok' },
    ...overrides,
  };
}

/** Asserts the run's event sequence shape: RUN_STARTED first, exactly one terminal event, last. */
export function terminalOf(events: AgentEvent[]): AgentEvent {
  if (events[0]?.type !== 'RUN_STARTED') throw new Error(`first event is ${events[0]?.type}`);
  const terminals = events.filter((e) => e.type === 'RUN_FINISHED' || e.type === 'RUN_ERROR');
  if (terminals.length !== 1) throw new Error(`expected one terminal event, got ${terminals.length}`);
  if (events[events.length - 1] !== terminals[0]) throw new Error('terminal event is not last');
  return terminals[0]!;
}

export function deferred<T = void>() {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

/** A runner seam the HTTP tests control (HTTP/1.1 and HTTP/2): it streams RUN_STARTED, then waits for `release` or an abort. */
export function controlledRunner() {
  const started: { request: RunRequest; signal: AbortSignal }[] = [];
  const release = deferred();
  const runner: AgentRunner = {
    async *run(request, { signal } = {}) {
      const base = { threadId: request.threadId, runId: request.runId };
      started.push({ request, signal: signal! });
      yield createRunStartedEvent(base);
      yield createTextMessageChunkEvent({ ...base, messageId: 'm1', delta: 'hi' });
      const aborted = new Promise<void>((r) => signal!.addEventListener('abort', () => r(), { once: true }));
      await Promise.race([release.promise, aborted]);
      if (signal!.aborted) {
        const reason = signal!.reason as AgentRunnerError;
        yield createRunErrorEvent({ ...base, code: reason.code, message: reason.message });
      } else yield createRunFinishedEvent(base);
    },
  };
  return { runner, started, release };
}
