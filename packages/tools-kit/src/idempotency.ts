import { createHash } from 'node:crypto';
import type { ActAsClaims, JsonValue, ToolResult } from '@threadline/contracts';
import { Reject, fail, json, respond } from './responses.js';
import type { ToolStore } from './store.js';

interface Outcome {
  fingerprint: string;
  result: ToolResult | Reject;
  replay: boolean;
}

/**
 * Calls with an idempotency key: the first success is stored under the key (scoped to the token's user and
 * thread and the tool) and a repeat with the same input gets it back (`Idempotent-Replayed: true`) without the
 * handler running again; a repeat with other input is a `conflict`. A duplicate that arrives while the first
 * call still runs waits for it instead of writing a second time.
 */
export class IdempotentCalls {
  readonly #store: ToolStore;
  readonly #inflight = new Map<string, Promise<Outcome>>();

  constructor(store: ToolStore) {
    this.#store = store;
  }

  /** Answers the call `execute` makes, once per key. `input` is the validated input. */
  async run(
    claims: ActAsClaims,
    toolName: string,
    idempotencyKey: string,
    input: unknown,
    execute: () => Promise<ToolResult | Reject>,
  ): Promise<Response> {
    const storeKey = `tools-kit:idem:${JSON.stringify([claims.sub, claims.thread, toolName, idempotencyKey])}`;
    const fingerprint = fingerprintOf(input);
    const running = this.#inflight.get(storeKey);
    if (running) {
      const first = await running;
      if (first.fingerprint !== fingerprint)
        return fail(new Reject('conflict', 'this idempotency key was used with a different input'));
      return !(first.result instanceof Reject) && first.result.ok
        ? replayed(first.result)
        : respond(first.result);
    }
    const store = this.#store;
    const work = (async (): Promise<Outcome> => {
      const stored = await store.getIdempotent(storeKey);
      if (stored !== null) return { fingerprint, result: fromStored(stored, fingerprint), replay: true };
      const result = await execute();
      if (result instanceof Reject || !result.ok) return { fingerprint, result, replay: false };
      // Only successes are kept: a failed call wrote nothing, so retrying it with the same key is safe.
      const kept = await store.putIdempotent(storeKey, { fingerprint, data: result.data as JsonValue });
      return { fingerprint, result: fromStored(kept, fingerprint), replay: false };
    })();
    this.#inflight.set(storeKey, work);
    try {
      const { result, replay } = await work;
      return replay && !(result instanceof Reject) ? replayed(result) : respond(result);
    } finally {
      this.#inflight.delete(storeKey);
    }
  }
}

function fromStored(stored: JsonValue, fingerprint: string): ToolResult | Reject {
  const record = stored as { fingerprint?: unknown; data?: JsonValue };
  if (typeof record !== 'object' || record === null || record.fingerprint !== fingerprint) {
    return new Reject('conflict', 'this idempotency key was used with a different input');
  }
  return { ok: true, data: record.data ?? null };
}

function replayed(result: ToolResult): Response {
  return json(200, result, { 'idempotent-replayed': 'true' });
}

function fingerprintOf(value: unknown): string {
  return createHash('sha256').update(canonicalJson(value)).digest('base64url');
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (typeof value === 'object' && value !== null) {
    const keys = Object.keys(value).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}
