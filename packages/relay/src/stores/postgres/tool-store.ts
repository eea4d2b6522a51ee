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
import { idempotencyHash, isId, type PgRunner } from './driver.js';

/**
 * The tools-kit {@link ToolStore} part of the PostgreSQL store (profiles, session items, idempotent results,
 * paused runs' states), on the store's pool and tables.
 */
export class PostgresToolStorage implements ToolStore {
  readonly #pg: PgRunner;
  readonly #p: string;
  readonly #open: () => void;

  /** `open` throws StoreError `closed` once the store is closed; `p` is the table prefix. */
  constructor(runner: PgRunner, p: string, open: () => void) {
    this.#pg = runner;
    this.#p = p;
    this.#open = open;
  }

  async getProfile(userId: string): Promise<Record<string, JsonValue>> {
    this.#open();
    if (!isId(userId)) return {};
    const { rows } = await this.#pg.query<{ json: string }>(
      'reading a profile',
      `SELECT json FROM ${this.#p}profiles WHERE user_id = $1`,
      [userId],
    );
    return rows[0] ? (JSON.parse(rows[0].json) as Record<string, JsonValue>) : {};
  }

  async patchProfile(userId: string, patch: Record<string, JsonValue>): Promise<Record<string, JsonValue>> {
    this.#open();
    checkId('userId', userId);
    checkJsonObject('profile patch', patch);
    const p = this.#p;
    return this.#pg.transaction('patching a profile', async (client) => {
      // The upsert takes the row's lock (creating the row if needed): concurrent patches apply one after another.
      const { rows } = await client.query<{ json: string }>(
        `INSERT INTO ${p}profiles (user_id, json) VALUES ($1, '{}') ON CONFLICT (user_id) DO UPDATE SET json = ${p}profiles.json RETURNING json`,
        [userId],
      );
      const current = JSON.parse(rows[0]!.json) as Record<string, JsonValue>;
      const text = JSON.stringify(mergeProfile(current, patch));
      await client.query(`UPDATE ${p}profiles SET json = $2 WHERE user_id = $1`, [userId, text]);
      return JSON.parse(text) as Record<string, JsonValue>;
    });
  }

  async getSessionItems(threadId: string, limit?: number): Promise<JsonValue[]> {
    this.#open();
    const n = limit === undefined ? null : checkLimit('limit', limit);
    if (!isId(threadId)) return [];
    const { rows } = await this.#pg.query<{ json: string }>(
      'reading session items',
      // LIMIT NULL is "no limit".
      `SELECT json FROM (SELECT id, json FROM ${this.#p}session_items WHERE thread_id = $1 ORDER BY id DESC LIMIT $2) AS s ORDER BY id`,
      [threadId, n],
    );
    return rows.map((row) => JSON.parse(row.json) as JsonValue);
  }

  async addSessionItems(threadId: string, items: readonly JsonValue[]): Promise<void> {
    this.#open();
    checkId('threadId', threadId);
    if (!Array.isArray(items)) throw new StoreError('invalid_message', 'session items must be an array');
    const texts = items.map((item, i) => JSON.stringify(checkJson(`session item [${i}]`, item)));
    if (texts.length === 0) return;
    await this.#pg.query(
      'adding session items',
      `INSERT INTO ${this.#p}session_items (thread_id, json) SELECT $1, u.json FROM unnest($2::text[]) WITH ORDINALITY AS u(json, n) ORDER BY u.n`,
      [threadId, texts],
    );
  }

  async popSessionItem(threadId: string): Promise<JsonValue | null> {
    this.#open();
    if (!isId(threadId)) return null;
    const p = this.#p;
    // One statement; FOR UPDATE makes a concurrent pop wait and then take the next newest, not the same row.
    const { rows } = await this.#pg.query<{ json: string }>(
      'popping a session item',
      `DELETE FROM ${p}session_items WHERE id = (SELECT id FROM ${p}session_items WHERE thread_id = $1 ORDER BY id DESC LIMIT 1 FOR UPDATE) RETURNING json`,
      [threadId],
    );
    return rows[0] ? (JSON.parse(rows[0].json) as JsonValue) : null;
  }

  async clearSession(threadId: string): Promise<void> {
    this.#open();
    if (!isId(threadId)) return;
    await this.#pg.query('clearing a session', `DELETE FROM ${this.#p}session_items WHERE thread_id = $1`, [
      threadId,
    ]);
  }

  async getIdempotent(key: string): Promise<JsonValue | null> {
    this.#open();
    checkIdempotencyKey(key);
    const { rows } = await this.#pg.query<{ json: string }>(
      'reading an idempotency key',
      `SELECT json FROM ${this.#p}idempotency WHERE key_sha256 = $1`,
      [idempotencyHash(key)],
    );
    return rows[0] ? (JSON.parse(rows[0].json) as JsonValue) : null;
  }

  async putIdempotent(key: string, value: JsonValue): Promise<JsonValue> {
    this.#open();
    checkIdempotencyKey(key);
    const text = JSON.stringify(checkJson('idempotent value', value));
    const hash = idempotencyHash(key);
    const p = this.#p;
    const inserted = await this.#pg.query<{ json: string }>(
      'storing an idempotency key',
      `INSERT INTO ${p}idempotency (key_sha256, json) VALUES ($1, $2) ON CONFLICT (key_sha256) DO NOTHING RETURNING json`,
      [hash, text],
    );
    if (inserted.rows[0]) return JSON.parse(inserted.rows[0].json) as JsonValue;
    // Someone else's row won (its insert committed before ours gave up): a new statement sees it.
    const { rows } = await this.#pg.query<{ json: string }>(
      'reading an idempotency key',
      `SELECT json FROM ${p}idempotency WHERE key_sha256 = $1`,
      [hash],
    );
    if (!rows[0]) throw new StoreError('store_error', `idempotency key "${key}" vanished after a conflict`);
    return JSON.parse(rows[0].json) as JsonValue;
  }

  async getRunState(threadId: string, runId: string): Promise<string | null> {
    this.#open();
    checkRunState(threadId, runId);
    const { rows } = await this.#pg.query<{ state: string }>(
      'reading a run state',
      `SELECT state FROM ${this.#p}run_states WHERE thread_id = $1 AND run_id = $2`,
      [threadId, runId],
    );
    return rows[0] ? rows[0].state : null;
  }

  async putRunState(threadId: string, runId: string, state: string): Promise<void> {
    this.#open();
    const text = checkRunState(threadId, runId, state);
    await this.#pg.query(
      'storing a run state',
      `INSERT INTO ${this.#p}run_states (thread_id, run_id, state) VALUES ($1, $2, $3) ON CONFLICT (thread_id, run_id) DO UPDATE SET state = excluded.state`,
      [threadId, runId, text],
    );
  }

  async deleteRunState(threadId: string, runId: string): Promise<void> {
    this.#open();
    checkRunState(threadId, runId);
    await this.#pg.query(
      'deleting a run state',
      `DELETE FROM ${this.#p}run_states WHERE thread_id = $1 AND run_id = $2`,
      [threadId, runId],
    );
  }
}
