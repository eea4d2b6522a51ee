import type { AgentEvent, JsonValue } from '@threadline/contracts';

/**
 * Storage the built-in tools use; the host implements it (relay's sqlite/mongodb/memory stores do,
 * structurally). Every write is atomic: it commits whole or not at all.
 */
export interface ToolStore {
  /** The user's profile; `{}` when there is none. */
  getProfile(userId: string): Promise<Record<string, JsonValue>>;
  /** Applies a patch (a `null` value deletes the key) atomically and returns the new profile. */
  patchProfile(userId: string, patch: Record<string, JsonValue>): Promise<Record<string, JsonValue>>;
  /** The thread's session items, oldest first; with `limit`, the last `limit` of them. */
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
