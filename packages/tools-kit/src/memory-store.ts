import { FORBIDDEN_KEYS, ID_PATTERN, LIMITS, findNonJson } from '@threadline/contracts';
import type { JsonValue } from '@threadline/contracts';
import { ToolsKitError } from './errors.js';
import { MAX_IDEMPOTENCY_KEY_LENGTH, MAX_RUN_STATE_LENGTH } from './store.js';
import type { ToolStore } from './store.js';

/** Bounds of a {@link MemoryToolStore}. */
export interface MemoryToolStoreOptions {
  /** Most session items one thread may hold; an append past it fails whole with `limit_exceeded`. Default 10,000. */
  maxSessionItems?: number;
  /** Most idempotent results kept; the oldest is forgotten first. Default 10,000. */
  maxIdempotencyKeys?: number;
}

/**
 * An in-memory {@link ToolStore} for tests, examples and single-process demos. Values are copied in and out,
 * so callers can never change stored state by mutating what they passed or got back. It refuses what every
 * {@link ToolStore} refuses (it passes `runToolStoreConformance`), with `ToolsKitError` `invalid_value`.
 * @example
 * const store = new MemoryToolStore();
 * const router = createToolRouter({ tokens, store });
 */
export class MemoryToolStore implements ToolStore {
  readonly #profiles = new Map<string, Map<string, JsonValue>>();
  readonly #sessions = new Map<string, JsonValue[]>();
  readonly #idempotent = new Map<string, JsonValue>();
  readonly #runStates = new Map<string, string>();
  readonly #maxSessionItems: number;
  readonly #maxIdempotencyKeys: number;

  constructor(options: MemoryToolStoreOptions = {}) {
    this.#maxSessionItems = positiveInt(options.maxSessionItems, 10_000, 'maxSessionItems');
    this.#maxIdempotencyKeys = positiveInt(options.maxIdempotencyKeys, 10_000, 'maxIdempotencyKeys');
  }

  async getProfile(userId: string): Promise<Record<string, JsonValue>> {
    return toRecord(this.#profiles.get(userId));
  }

  async patchProfile(userId: string, patch: Record<string, JsonValue>): Promise<Record<string, JsonValue>> {
    assertId('userId', userId);
    assertJson(patch, 'profile patch');
    if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) {
      throw new ToolsKitError('invalid_value', 'profile patch must be an object');
    }
    // Build the next profile aside and swap it in, so a failure part-way leaves the old one intact.
    const next = new Map(this.#profiles.get(userId));
    for (const [key, value] of Object.entries(patch)) {
      if (FORBIDDEN_KEYS.has(key))
        throw new ToolsKitError('invalid_value', `profile key "${key}" is not allowed`);
      if (value === null) next.delete(key);
      else next.set(key, structuredClone(value));
    }
    this.#profiles.set(userId, next);
    return toRecord(next);
  }

  async getSessionItems(threadId: string, limit?: number): Promise<JsonValue[]> {
    if (limit !== undefined && (!Number.isSafeInteger(limit) || limit < 1))
      throw new ToolsKitError('invalid_value', 'limit must be a positive integer');
    const items = this.#sessions.get(threadId) ?? [];
    const slice = limit === undefined ? items : items.slice(-limit);
    return structuredClone(slice);
  }

  async addSessionItems(threadId: string, items: readonly JsonValue[]): Promise<void> {
    assertId('threadId', threadId);
    if (!Array.isArray(items)) throw new ToolsKitError('invalid_value', 'session items must be an array');
    assertJson(items, 'session items');
    const current = this.#sessions.get(threadId) ?? [];
    if (current.length + items.length > this.#maxSessionItems) {
      throw new ToolsKitError(
        'limit_exceeded',
        `a thread's session holds at most ${this.#maxSessionItems} items; clear or pop some first`,
      );
    }
    // Cloned (the step that can throw) before touching the stored array, so the append stays all or nothing.
    const copies = structuredClone(items as JsonValue[]);
    if (!this.#sessions.has(threadId)) this.#sessions.set(threadId, current);
    for (const item of copies) current.push(item);
  }

  async popSessionItem(threadId: string): Promise<JsonValue | null> {
    const items = this.#sessions.get(threadId);
    if (!items || items.length === 0) return null;
    return items.pop() ?? null;
  }

  async clearSession(threadId: string): Promise<void> {
    this.#sessions.delete(threadId);
  }

  async getIdempotent(key: string): Promise<JsonValue | null> {
    assertKey(key);
    const value = this.#idempotent.get(key);
    return value === undefined ? null : structuredClone(value);
  }

  async putIdempotent(key: string, value: JsonValue): Promise<JsonValue> {
    assertKey(key);
    assertJson(value, 'idempotent result');
    const existing = this.#idempotent.get(key);
    if (existing !== undefined) return structuredClone(existing);
    if (this.#idempotent.size >= this.#maxIdempotencyKeys) {
      const oldest = this.#idempotent.keys().next();
      if (!oldest.done) this.#idempotent.delete(oldest.value);
    }
    this.#idempotent.set(key, structuredClone(value));
    return structuredClone(value);
  }

  async getRunState(threadId: string, runId: string): Promise<string | null> {
    assertRun(threadId, runId);
    return this.#runStates.get(JSON.stringify([threadId, runId])) ?? null;
  }

  async putRunState(threadId: string, runId: string, state: string): Promise<void> {
    assertRun(threadId, runId);
    if (typeof state !== 'string') throw new ToolsKitError('invalid_value', 'a run state must be a string');
    if (state.length > MAX_RUN_STATE_LENGTH)
      throw new ToolsKitError(
        'invalid_value',
        `a run state may be at most ${MAX_RUN_STATE_LENGTH} characters`,
      );
    const key = JSON.stringify([threadId, runId]);
    // Bounded like the idempotency keys: the oldest saved state goes first.
    if (!this.#runStates.has(key) && this.#runStates.size >= this.#maxIdempotencyKeys) {
      const oldest = this.#runStates.keys().next();
      if (!oldest.done) this.#runStates.delete(oldest.value);
    }
    this.#runStates.set(key, state);
  }

  async deleteRunState(threadId: string, runId: string): Promise<void> {
    assertRun(threadId, runId);
    this.#runStates.delete(JSON.stringify([threadId, runId]));
  }

  /** A deep copy of everything stored, for tests that assert nothing changed. */
  snapshot(): {
    profiles: Record<string, Record<string, JsonValue>>;
    sessions: Record<string, JsonValue[]>;
    idempotent: Record<string, JsonValue>;
  } {
    const profiles: Record<string, Record<string, JsonValue>> = {};
    for (const [user, profile] of this.#profiles) profiles[user] = toRecord(profile);
    const sessions: Record<string, JsonValue[]> = {};
    for (const [thread, items] of this.#sessions)
      if (items.length > 0) sessions[thread] = structuredClone(items);
    const idempotent: Record<string, JsonValue> = {};
    for (const [key, value] of this.#idempotent) idempotent[key] = structuredClone(value);
    return { profiles, sessions, idempotent };
  }
}

function toRecord(map: Map<string, JsonValue> | undefined): Record<string, JsonValue> {
  const out: Record<string, JsonValue> = {};
  if (map) for (const [k, v] of map) out[k] = structuredClone(v);
  return out;
}

function assertJson(value: unknown, what: string): void {
  const found = findNonJson(value);
  if (found)
    throw new ToolsKitError(
      'invalid_value',
      `${what} is not plain JSON at ${found.path.join('.') || '(root)'}: ${found.reason}`,
    );
}

/** Refuses what is not a contract id (the same rule as every id on the wire). */
function assertId(what: string, value: unknown): void {
  if (
    typeof value !== 'string' ||
    value.length === 0 ||
    value.length > LIMITS.maxIdLength ||
    !ID_PATTERN.test(value)
  )
    throw new ToolsKitError(
      'invalid_value',
      `${what} must be an id of 1 to ${LIMITS.maxIdLength} letters, digits and _ . : -`,
    );
}

function assertRun(threadId: unknown, runId: unknown): void {
  assertId('threadId', threadId);
  assertId('runId', runId);
}

function assertKey(key: unknown): void {
  if (typeof key !== 'string' || key.length === 0 || key.length > MAX_IDEMPOTENCY_KEY_LENGTH)
    throw new ToolsKitError(
      'invalid_value',
      `an idempotency key must be a string of 1 to ${MAX_IDEMPOTENCY_KEY_LENGTH} characters`,
    );
}

function positiveInt(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < 1)
    throw new ToolsKitError('invalid_options', `${name} must be a positive integer`);
  return value;
}
