import type { JsonValue } from '@threadline/contracts';
import type { ToolStore } from '@threadline/tools-kit';

/**
 * Base of the adapters that are tools-kit's {@link ToolStore} too (SQLite, PostgreSQL, MongoDB): every
 * `ToolStore` method forwards to the adapter's tool-store part, which runs on the adapter's own connection
 * and transactions. Kept apart so the adapter class itself holds the `EventStore` side only.
 */
export abstract class ToolStorePart implements ToolStore {
  /** The adapter's tool-store part. */
  protected abstract get toolStore(): ToolStore;

  getProfile(userId: string): Promise<Record<string, JsonValue>> {
    return this.toolStore.getProfile(userId);
  }

  patchProfile(userId: string, patch: Record<string, JsonValue>): Promise<Record<string, JsonValue>> {
    return this.toolStore.patchProfile(userId, patch);
  }

  getSessionItems(threadId: string, limit?: number): Promise<JsonValue[]> {
    return this.toolStore.getSessionItems(threadId, limit);
  }

  addSessionItems(threadId: string, items: readonly JsonValue[]): Promise<void> {
    return this.toolStore.addSessionItems(threadId, items);
  }

  popSessionItem(threadId: string): Promise<JsonValue | null> {
    return this.toolStore.popSessionItem(threadId);
  }

  clearSession(threadId: string): Promise<void> {
    return this.toolStore.clearSession(threadId);
  }

  getIdempotent(key: string): Promise<JsonValue | null> {
    return this.toolStore.getIdempotent(key);
  }

  putIdempotent(key: string, value: JsonValue): Promise<JsonValue> {
    return this.toolStore.putIdempotent(key, value);
  }

  getRunState(threadId: string, runId: string): Promise<string | null> {
    return this.toolStore.getRunState(threadId, runId);
  }

  putRunState(threadId: string, runId: string, state: string): Promise<void> {
    return this.toolStore.putRunState(threadId, runId, state);
  }

  deleteRunState(threadId: string, runId: string): Promise<void> {
    return this.toolStore.deleteRunState(threadId, runId);
  }
}
