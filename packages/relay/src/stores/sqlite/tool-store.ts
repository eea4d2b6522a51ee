import type { JsonValue } from '@threadline/contracts';
import type { ToolStore } from '@threadline/tools-kit';
import { StoreError } from '../../errors.js';
import {
  checkId,
  checkIdempotencyKey,
  checkJson,
  checkJsonObject,
  checkLimit,
  checkRunState,
  mergeProfile,
} from '../store-input.js';
import type { SqliteStatements } from './statements.js';

/** How the tool-store part runs statements: the store's open check, plain calls and write transactions. */
export interface SqliteAccess {
  /** Throws StoreError `closed` once the store is closed. */
  open(): void;
  /** Runs `fn` and maps failures to StoreError. */
  do<T>(doing: string, fn: () => T): T;
  /** Runs `fn` in one write transaction and maps failures to StoreError. */
  write<T>(doing: string, fn: () => T): T;
}

/**
 * The tools-kit {@link ToolStore} part of the SQLite store (profiles, session items, idempotent results,
 * paused runs' states), on the store's connection and transactions.
 */
export class SqliteToolStorage implements ToolStore {
  readonly #stmt: SqliteStatements;
  readonly #access: SqliteAccess;

  constructor(stmt: SqliteStatements, access: SqliteAccess) {
    this.#stmt = stmt;
    this.#access = access;
  }

  async getProfile(userId: string): Promise<Record<string, JsonValue>> {
    this.#access.open();
    return this.#access.do('reading a profile', () => {
      const row = this.#stmt.getProfile.get(userId) as { json: string } | undefined;
      return row ? (JSON.parse(row.json) as Record<string, JsonValue>) : {};
    });
  }

  async patchProfile(userId: string, patch: Record<string, JsonValue>): Promise<Record<string, JsonValue>> {
    this.#access.open();
    checkId('userId', userId);
    checkJsonObject('profile patch', patch);
    return this.#access.write('patching a profile', () => {
      const row = this.#stmt.getProfile.get(userId) as { json: string } | undefined;
      const current = row ? (JSON.parse(row.json) as Record<string, JsonValue>) : {};
      const text = JSON.stringify(mergeProfile(current, patch));
      this.#stmt.putProfile.run(userId, text);
      return JSON.parse(text) as Record<string, JsonValue>;
    });
  }

  async getSessionItems(threadId: string, limit?: number): Promise<JsonValue[]> {
    this.#access.open();
    // -1 is SQLite's "no limit".
    const n = limit === undefined ? -1 : checkLimit('limit', limit);
    return this.#access.do('reading session items', () =>
      (this.#stmt.lastSessionItems.all(threadId, n) as unknown as { json: string }[]).map(
        (row) => JSON.parse(row.json) as JsonValue,
      ),
    );
  }

  async addSessionItems(threadId: string, items: readonly JsonValue[]): Promise<void> {
    this.#access.open();
    checkId('threadId', threadId);
    if (!Array.isArray(items)) throw new StoreError('invalid_message', 'session items must be an array');
    const texts = items.map((item, i) => JSON.stringify(checkJson(`session item [${i}]`, item)));
    if (texts.length === 0) return;
    this.#access.write('adding session items', () => {
      for (const text of texts) this.#stmt.addSessionItem.run(threadId, text);
    });
  }

  async popSessionItem(threadId: string): Promise<JsonValue | null> {
    this.#access.open();
    return this.#access.do('popping a session item', () => {
      // One statement, so it is atomic without an explicit transaction.
      const row = this.#stmt.popSessionItem.get(threadId) as { json: string } | undefined;
      return row ? (JSON.parse(row.json) as JsonValue) : null;
    });
  }

  async clearSession(threadId: string): Promise<void> {
    this.#access.open();
    this.#access.do('clearing a session', () => {
      this.#stmt.clearSession.run(threadId);
    });
  }

  async getIdempotent(key: string): Promise<JsonValue | null> {
    this.#access.open();
    checkIdempotencyKey(key);
    return this.#access.do('reading an idempotency key', () => {
      const row = this.#stmt.getIdempotent.get(key) as { json: string } | undefined;
      return row ? (JSON.parse(row.json) as JsonValue) : null;
    });
  }

  async putIdempotent(key: string, value: JsonValue): Promise<JsonValue> {
    this.#access.open();
    checkIdempotencyKey(key);
    const text = JSON.stringify(checkJson('idempotent value', value));
    return this.#access.write('storing an idempotency key', () => {
      this.#stmt.putIdempotent.run(key, text);
      const row = this.#stmt.getIdempotent.get(key) as { json: string };
      return JSON.parse(row.json) as JsonValue;
    });
  }

  async getRunState(threadId: string, runId: string): Promise<string | null> {
    this.#access.open();
    checkRunState(threadId, runId);
    return this.#access.do('reading a run state', () => {
      const row = this.#stmt.getRunState.get(threadId, runId) as { state: string } | undefined;
      return row ? row.state : null;
    });
  }

  async putRunState(threadId: string, runId: string, state: string): Promise<void> {
    this.#access.open();
    const text = checkRunState(threadId, runId, state);
    this.#access.write('storing a run state', () => {
      this.#stmt.putRunState.run(threadId, runId, text);
    });
  }

  async deleteRunState(threadId: string, runId: string): Promise<void> {
    this.#access.open();
    checkRunState(threadId, runId);
    this.#access.write('deleting a run state', () => {
      this.#stmt.deleteRunState.run(threadId, runId);
    });
  }
}
