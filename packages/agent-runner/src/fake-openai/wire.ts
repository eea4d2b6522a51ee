import type { ServerResponse } from 'node:http';
import type { FakeUsage } from './types.js';

// What every endpoint of the fake server shares: JSON helpers, paced text, and SSE writing with backpressure.

/** A JSON object. */
export type Json = Record<string, unknown>;

/** Waits `ms`, or less when `signal` aborts. */
export const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal.aborted || ms <= 0) return resolve();
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => (clearTimeout(t), resolve()), { once: true });
  });

/** `text` in pieces of `size` characters. */
export function chunks(text: string, size: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < text.length; i += size) out.push(text.slice(i, i + size));
  return out;
}

/** Now in Unix seconds, as the API's `created_at`. */
export const unixNow = () => Math.floor(Date.now() / 1000);
/** Function call arguments as the API sends them: JSON text. */
export const argumentsText = (value: unknown) =>
  typeof value === 'string' ? value : JSON.stringify(value ?? {});
/** True for a JSON object (not an array, not null). */
export const isRecord = (value: unknown): value is Json =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/** Writes SSE text to a response, waiting for `drain` when the socket's buffer is full. */
export class SseWriter {
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
export type TurnResult = { kind: 'body'; body: Json } | { kind: 'error'; message: string; code: string };

/** What playing one turn needs: the request's number and body, where to stream, and when to stop. */
export interface PlayContext {
  n: number;
  body: Json;
  /** Null for a non-streaming request: nothing is written until the turn is over. */
  sse: SseWriter | null;
  signal: AbortSignal;
  onDeltaWritten: ((index: number) => void) | undefined;
}

/** A Responses API `usage` object (default 1 input, 1 output token). */
export const responsesUsage = (usage: FakeUsage = { input: 1, output: 1 }) => ({
  input_tokens: usage.input,
  input_tokens_details: { cached_tokens: 0, cache_write_tokens: 0 },
  output_tokens: usage.output,
  output_tokens_details: { reasoning_tokens: 0 },
  total_tokens: usage.input + usage.output,
});
