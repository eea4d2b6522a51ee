import type { JsonValue } from '@threadline/contracts';
import type { ClientSession } from 'mongodb';
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
import { inSession, isDuplicateKey, type MongoCollections } from './docs.js';

/** How the tool-store part runs: the store's open check, error mapping and transactions. */
export interface MongoAccess {
  /** Throws StoreError `closed` once the store is closed. */
  open(): void;
  /** Runs `fn` and maps failures to StoreError. */
  do<T>(doing: string, fn: () => Promise<T>): Promise<T>;
  /** Runs `fn` in a transaction when the deployment has them, else directly (session undefined). */
  tx<T>(fn: (session: ClientSession | undefined) => Promise<T>): Promise<T>;
}

/**
 * The tools-kit {@link ToolStore} part of the MongoDB store (profiles, session items, idempotent results,
 * paused runs' states), on the store's collections and transactions.
 */
export class MongoToolStorage implements ToolStore {
  readonly #c: MongoCollections;
  readonly #maxRetries: number;
  readonly #access: MongoAccess;

  /** `maxProfileRetries` bounds the optimistic profile update under contention. */
  constructor(collections: MongoCollections, maxProfileRetries: number, access: MongoAccess) {
    this.#c = collections;
    this.#maxRetries = maxProfileRetries;
    this.#access = access;
  }

  async getProfile(userId: string): Promise<Record<string, JsonValue>> {
    this.#access.open();
    return this.#access.do('reading a profile', async () => {
      const doc = await this.#c.profiles.findOne({ _id: userId });
      return doc ? (JSON.parse(doc.json) as Record<string, JsonValue>) : {};
    });
  }

  async patchProfile(userId: string, patch: Record<string, JsonValue>): Promise<Record<string, JsonValue>> {
    this.#access.open();
    checkId('userId', userId);
    checkJsonObject('profile patch', patch);
    return this.#access.do('patching a profile', async () => {
      // Optimistic compare-and-set on a version number: atomic on every deployment, no transaction needed.
      for (let i = 0; i < this.#maxRetries; i++) {
        const doc = await this.#c.profiles.findOne({ _id: userId });
        const current = doc ? (JSON.parse(doc.json) as Record<string, JsonValue>) : {};
        const json = JSON.stringify(mergeProfile(current, patch));
        if (!doc) {
          try {
            await this.#c.profiles.insertOne({ _id: userId, json, version: 1 });
            return JSON.parse(json) as Record<string, JsonValue>;
          } catch (error) {
            if (isDuplicateKey(error)) continue;
            throw error;
          }
        }
        const { matchedCount } = await this.#c.profiles.updateOne(
          { _id: userId, version: doc.version },
          { $set: { json }, $inc: { version: 1 } },
        );
        if (matchedCount === 1) return JSON.parse(json) as Record<string, JsonValue>;
      }
      throw new StoreError(
        'conflict',
        `profile of "${userId}" changed concurrently ${this.#maxRetries} times in a row; try again`,
      );
    });
  }

  async getSessionItems(threadId: string, limit?: number): Promise<JsonValue[]> {
    this.#access.open();
    const n = limit === undefined ? 0 : checkLimit('limit', limit);
    return this.#access.do('reading session items', async () => {
      // limit(0) is "no limit" in MongoDB.
      const docs = await this.#c.sessionItems.find({ threadId }).sort({ n: -1 }).limit(n).toArray();
      return docs.reverse().map((d) => JSON.parse(d.json) as JsonValue);
    });
  }

  async addSessionItems(threadId: string, items: readonly JsonValue[]): Promise<void> {
    this.#access.open();
    checkId('threadId', threadId);
    if (!Array.isArray(items)) throw new StoreError('invalid_message', 'session items must be an array');
    const texts = items.map((item, i) => JSON.stringify(checkJson(`session item [${i}]`, item)));
    if (texts.length === 0) return;
    await this.#access.do('adding session items', () =>
      this.#access.tx(async (session) => {
        const counter = await this.#c.counters.findOneAndUpdate(
          { _id: `session:${threadId}` },
          { $inc: { n: texts.length } },
          { upsert: true, returnDocument: 'after', ...inSession(session) },
        );
        const first = (counter?.n ?? texts.length) - texts.length + 1;
        const docs = texts.map((json, i) => ({ threadId, n: first + i, json }));
        try {
          await this.#c.sessionItems.insertMany(docs, { ...inSession(session), ordered: true });
        } catch (error) {
          if (!session)
            await this.#c.sessionItems.deleteMany({
              threadId,
              n: { $gte: first, $lt: first + texts.length },
            });
          throw error;
        }
      }),
    );
  }

  async popSessionItem(threadId: string): Promise<JsonValue | null> {
    this.#access.open();
    return this.#access.do('popping a session item', async () => {
      const doc = await this.#c.sessionItems.findOneAndDelete({ threadId }, { sort: { n: -1 } });
      return doc ? (JSON.parse(doc.json) as JsonValue) : null;
    });
  }

  async clearSession(threadId: string): Promise<void> {
    this.#access.open();
    await this.#access.do('clearing a session', () => this.#c.sessionItems.deleteMany({ threadId }));
  }

  async getIdempotent(key: string): Promise<JsonValue | null> {
    this.#access.open();
    checkIdempotencyKey(key);
    return this.#access.do('reading an idempotency key', async () => {
      const doc = await this.#c.idempotency.findOne({ _id: key });
      return doc ? (JSON.parse(doc.json) as JsonValue) : null;
    });
  }

  async putIdempotent(key: string, value: JsonValue): Promise<JsonValue> {
    this.#access.open();
    checkIdempotencyKey(key);
    const json = JSON.stringify(checkJson('idempotent value', value));
    return this.#access.do('storing an idempotency key', async () => {
      try {
        await this.#c.idempotency.insertOne({ _id: key, json });
        return JSON.parse(json) as JsonValue;
      } catch (error) {
        if (!isDuplicateKey(error)) throw error;
      }
      const doc = await this.#c.idempotency.findOne({ _id: key });
      if (!doc)
        throw new StoreError('store_error', `idempotency key "${key}" vanished after a duplicate-key error`);
      return JSON.parse(doc.json) as JsonValue;
    });
  }

  async getRunState(threadId: string, runId: string): Promise<string | null> {
    this.#access.open();
    checkRunState(threadId, runId);
    return this.#access.do('reading a run state', async () => {
      const doc = await this.#c.runStates.findOne({ _id: JSON.stringify([threadId, runId]) });
      return doc ? doc.state : null;
    });
  }

  async putRunState(threadId: string, runId: string, state: string): Promise<void> {
    this.#access.open();
    const text = checkRunState(threadId, runId, state);
    await this.#access.do('storing a run state', async () => {
      await this.#c.runStates.replaceOne(
        { _id: JSON.stringify([threadId, runId]) },
        { state: text },
        { upsert: true },
      );
    });
  }

  async deleteRunState(threadId: string, runId: string): Promise<void> {
    this.#access.open();
    checkRunState(threadId, runId);
    await this.#access.do('deleting a run state', async () => {
      await this.#c.runStates.deleteOne({ _id: JSON.stringify([threadId, runId]) });
    });
  }
}
