import type { AgentEvent, JsonValue } from '@threadline/contracts';

/** Longest idempotency key a {@link ToolStore} accepts; the router prefixes user keys with user and tool names. */
export const MAX_IDEMPOTENCY_KEY_LENGTH = 1024;
/** Longest run state a {@link ToolStore} keeps (characters): a paused run's serialized state, history included. */
export const MAX_RUN_STATE_LENGTH = 16 * 1024 * 1024;

/**
 * The storage port of the tool router and its built-in tools; the host implements it. `MemoryToolStore`
 * implements it in process memory, and the relay's SQLite, PostgreSQL and MongoDB stores implement it next to
 * the relay's `EventStore`, so one database serves both. Every adapter passes `runToolStoreConformance` from
 * `@threadline/tools-kit/testing`.
 *
 * Every write is atomic: it commits whole or not at all. Input a method refuses (a value that is not plain
 * JSON, a profile patch that is not an object or holds a forbidden key, a limit that is not a positive
 * integer, an idempotency key outside 1 to {@link MAX_IDEMPOTENCY_KEY_LENGTH} characters, a run id or thread
 * id that is not a contract id, a run state that is not a string of at most {@link MAX_RUN_STATE_LENGTH}
 * characters) is rejected before anything is written, with the adapter's coded error: `ToolsKitError`
 * `invalid_value` for `MemoryToolStore`, the relay's `StoreError` `invalid_message` for the relay's stores.
 */
export interface ToolStore {
  /** The user's profile; `{}` when there is none. */
  getProfile(userId: string): Promise<Record<string, JsonValue>>;
  /** Applies a patch (a `null` value deletes the key) atomically and returns the new profile. */
  patchProfile(userId: string, patch: Record<string, JsonValue>): Promise<Record<string, JsonValue>>;
  /** The thread's session items, oldest first; with `limit` (a positive integer), the last `limit` of them. */
  getSessionItems(threadId: string, limit?: number): Promise<JsonValue[]>;
  /** Appends items atomically. */
  addSessionItems(threadId: string, items: readonly JsonValue[]): Promise<void>;
  /** Removes and returns the newest item, or null. */
  popSessionItem(threadId: string): Promise<JsonValue | null>;
  /** Removes every item of the thread's session. */
  clearSession(threadId: string): Promise<void>;
  /** A stored idempotent result, or null. */
  getIdempotent(key: string): Promise<JsonValue | null>;
  /** Stores a result under `key` unless one is there already (first write wins); returns the stored one. */
  putIdempotent(key: string, value: JsonValue): Promise<JsonValue>;
  /**
   * The saved state of a run paused for a tool approval (the agent's serialized run, opaque text), or null.
   * Keyed by thread and run; the tool router scopes it to the act-as token's thread and run.
   */
  getRunState(threadId: string, runId: string): Promise<string | null>;
  /** Saves (or replaces) a paused run's state atomically. */
  putRunState(threadId: string, runId: string, state: string): Promise<void>;
  /** Forgets a run's saved state; nothing happens when there is none. */
  deleteRunState(threadId: string, runId: string): Promise<void>;
}

/** Where tool-emitted events go (the host wires it to `relay.publish`). */
export interface EventSink {
  emit(event: AgentEvent): Promise<void>;
}
