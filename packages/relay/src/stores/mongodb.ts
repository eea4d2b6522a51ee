import type { AgentEvent, JsonValue } from '@threadline/contracts';
import { MongoClient, type ClientSession, type Collection, type Db, type MongoClientOptions } from 'mongodb';
import type { ToolStore } from '@threadline/tools-kit';
import { StoreError } from '../errors.js';
import type {
  AppendBatch,
  ClaimRunsInput,
  DeleteThreadResult,
  EventStore,
  PruneResult,
  RunRecord,
  RunStatus,
  StartRunResult,
  StoredEvent,
  ThreadRecord,
} from './store.js';
import {
  checkAfterSeq,
  checkClaim,
  checkId,
  checkIdempotencyKey,
  checkJson,
  checkJsonObject,
  checkLimit,
  checkNewTitle,
  checkPrune,
  checkRenew,
  checkTitle,
  closedError,
  mergeProfile,
  notFoundThread,
  prepareBatches,
  prepareEvents,
  prepareStartRun,
  threadListLimit,
  toStoreError,
  withSeq,
  checkRunState,
} from './store-input.js';

/** Options of {@link openMongoStore}: give either `uri` (the store owns and closes the client) or `client`. */
export type MongoStoreOptions = (
  | { uri: string; client?: undefined; clientOptions?: MongoClientOptions }
  | { client: MongoClient; uri?: undefined; clientOptions?: undefined }
) & {
  /** Database name. */
  dbName: string;
  /** Prefix of every collection name, so the store can share a database with the host. Default `threadline_`. */
  collectionPrefix?: string;
  /**
   * Whether writes run in multi-document transactions. `'auto'` (default) uses them when the deployment
   * supports them (a replica set, even of one node, or a sharded cluster) and falls back on a standalone
   * server; `'required'` refuses to open without them; `'off'` never uses them. See {@link MongoStore}.
   */
  transactions?: 'auto' | 'required' | 'off';
  /** Bounded retries of an optimistic profile update under contention. Default 50. */
  maxProfileRetries?: number;
};

interface ThreadDoc {
  _id: string;
  ownerId: string;
  title: string;
  createdAt: number;
  updatedAt: number;
  /** The seq counter: appends reserve `n` seqs with one `$inc`. */
  lastSeq: number;
}
interface EventDoc {
  threadId: string;
  seq: number;
  json: string;
}
interface RunDoc {
  _id: string;
  threadId: string;
  userId: string;
  clientMessageId: string;
  status: RunStatus;
  startedAt: number;
  endedAt?: number;
  /** The lease: which relay instance streams the run, until when (ms since the epoch, the relays' clocks). */
  leaseOwner?: string;
  leaseExpires?: number;
}
interface ProfileDoc {
  _id: string;
  json: string;
  version: number;
}
interface SessionItemDoc {
  threadId: string;
  n: number;
  json: string;
}
interface CounterDoc {
  _id: string;
  n: number;
}
interface IdempotencyDoc {
  _id: string;
  json: string;
}

/** A paused run's state; `_id` is the JSON text of `[threadId, runId]`. */
interface RunStateDoc {
  _id: string;
  state: string;
}

/** Driver options for an optional session (exactOptionalPropertyTypes forbids `session: undefined`). */
function inSession(session: ClientSession | undefined): { session?: ClientSession } {
  return session ? { session } : {};
}

const DUPLICATE_KEY = 11000;
function isDuplicateKey(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { code?: unknown }).code === DUPLICATE_KEY;
}

function toThread(doc: ThreadDoc): ThreadRecord {
  return {
    threadId: doc._id,
    ownerId: doc.ownerId,
    title: doc.title,
    createdAt: doc.createdAt,
    updatedAt: doc.updatedAt,
  };
}
function toRun(doc: RunDoc): RunRecord {
  const run: RunRecord = {
    runId: doc._id,
    threadId: doc.threadId,
    userId: doc.userId,
    clientMessageId: doc.clientMessageId,
    status: doc.status,
    startedAt: doc.startedAt,
  };
  if (typeof doc.endedAt === 'number') run.endedAt = doc.endedAt;
  if (typeof doc.leaseOwner === 'string' && typeof doc.leaseExpires === 'number')
    run.lease = { owner: doc.leaseOwner, expiresAt: doc.leaseExpires };
  return run;
}

/**
 * An {@link EventStore} on MongoDB through the official driver (an optional peer dependency). Indexes are
 * created when it opens. A thread's seq counter lives in its thread document (`lastSeq`, reserved with one
 * `findOneAndUpdate` `$inc` per batch) and a unique index on `(threadId, seq)` makes a duplicate seq
 * impossible whatever happens. At most one running run per thread is also a unique (partial) index.
 *
 * With transactions (replica set or sharded cluster) every method is all-or-nothing and seqs have no
 * holes even with several relay processes. On a standalone server there are no multi-document
 * transactions: the store still never duplicates a seq or a run, undoes a batch whose insert fails, and
 * serializes appends per thread inside one process; but a process crash between reserving seqs and writing
 * the events leaves a hole, and with several processes a reader may briefly see seq n+1 before n. Run
 * MongoDB as a replica set (one node is enough) in production.
 *
 * It is tools-kit's `ToolStore` too (profiles, session items, idempotent results, paused runs' states) in
 * the same database, so one store serves the relay and the tool router.
 *
 * @example
 * import { openMongoStore } from '@threadline/relay/mongodb';
 * const store = await openMongoStore({ uri: process.env.MONGODB_URI!, dbName: 'app' });
 */
export class MongoStore implements EventStore, ToolStore {
  /** True when writes run in multi-document transactions. */
  readonly transactions: boolean;
  /**
   * Several threads' batches in one transaction (see {@link EventStore.appendMany}). Only offered when the
   * deployment has transactions: without them it could not be all or nothing across threads, and the relay
   * then appends thread by thread.
   */
  readonly appendMany?: (batches: readonly AppendBatch[]) => Promise<StoredEvent[][]>;
  readonly #client: MongoClient;
  readonly #ownsClient: boolean;
  readonly #threads: Collection<ThreadDoc>;
  readonly #events: Collection<EventDoc>;
  readonly #runs: Collection<RunDoc>;
  readonly #profiles: Collection<ProfileDoc>;
  readonly #sessionItems: Collection<SessionItemDoc>;
  readonly #counters: Collection<CounterDoc>;
  readonly #idempotency: Collection<IdempotencyDoc>;
  readonly #runStates: Collection<RunStateDoc>;
  readonly #maxProfileRetries: number;
  /** Per-thread write chains: appends of one thread from this process never overlap. */
  readonly #locks = new Map<string, Promise<unknown>>();
  #closed = false;

  /** Use {@link openMongoStore}, which connects, checks transaction support and creates the indexes. */
  constructor(options: {
    client: MongoClient;
    ownsClient: boolean;
    db: Db;
    prefix: string;
    transactions: boolean;
    maxProfileRetries: number;
  }) {
    this.#client = options.client;
    this.#ownsClient = options.ownsClient;
    this.transactions = options.transactions;
    this.#maxProfileRetries = options.maxProfileRetries;
    if (options.transactions) this.appendMany = (batches) => this.#appendMany(batches);
    const p = options.prefix;
    this.#threads = options.db.collection<ThreadDoc>(`${p}threads`);
    this.#events = options.db.collection<EventDoc>(`${p}events`);
    this.#runs = options.db.collection<RunDoc>(`${p}runs`);
    this.#profiles = options.db.collection<ProfileDoc>(`${p}profiles`);
    this.#sessionItems = options.db.collection<SessionItemDoc>(`${p}session_items`);
    this.#counters = options.db.collection<CounterDoc>(`${p}counters`);
    this.#idempotency = options.db.collection<IdempotencyDoc>(`${p}idempotency`);
    this.#runStates = options.db.collection<RunStateDoc>(`${p}run_states`);
  }

  /** Creates the indexes the store relies on (idempotent). Called by {@link openMongoStore}. */
  async ensureIndexes(): Promise<void> {
    await this.#threads.createIndex({ ownerId: 1, updatedAt: -1, _id: 1 }, { name: 'by_owner' });
    await this.#events.createIndex({ threadId: 1, seq: 1 }, { name: 'thread_seq_unique', unique: true });
    await this.#runs.createIndex(
      { threadId: 1, clientMessageId: 1 },
      { name: 'thread_message_unique', unique: true },
    );
    await this.#runs.createIndex(
      { threadId: 1 },
      { name: 'one_running_per_thread', unique: true, partialFilterExpression: { status: 'running' } },
    );
    await this.#runs.createIndex(
      { status: 1, startedAt: 1 },
      { name: 'running', partialFilterExpression: { status: 'running' } },
    );
    await this.#runs.createIndex(
      { status: 1, leaseExpires: 1 },
      { name: 'running_by_lease', partialFilterExpression: { status: 'running' } },
    );
    await this.#sessionItems.createIndex({ threadId: 1, n: -1 }, { name: 'thread_n_unique', unique: true });
  }

  async createThread(input: { threadId: string; ownerId: string; title?: string }): Promise<ThreadRecord> {
    this.#open();
    const threadId = checkId('threadId', input?.threadId);
    const ownerId = checkId('ownerId', input.ownerId);
    const title = checkTitle(input.title);
    const now = Date.now();
    const doc: ThreadDoc = { _id: threadId, ownerId, title, createdAt: now, updatedAt: now, lastSeq: 0 };
    try {
      await this.#threads.insertOne(doc);
    } catch (error) {
      if (isDuplicateKey(error)) throw new StoreError('conflict', `thread "${threadId}" already exists`);
      throw toStoreError(error, 'creating a thread');
    }
    return toThread(doc);
  }

  async getThread(threadId: string): Promise<ThreadRecord | null> {
    this.#open();
    return this.#do('reading a thread', async () => {
      const doc = await this.#threads.findOne({ _id: threadId });
      return doc ? toThread(doc) : null;
    });
  }

  async listThreads(ownerId: string, options?: { limit?: number }): Promise<ThreadRecord[]> {
    this.#open();
    const limit = threadListLimit(options);
    return this.#do('listing threads', async () =>
      (await this.#threads.find({ ownerId }).sort({ updatedAt: -1, _id: 1 }).limit(limit).toArray()).map(
        toThread,
      ),
    );
  }

  async renameThread(
    threadId: string,
    title: string,
    options?: { onlyIfUntitled?: boolean },
  ): Promise<ThreadRecord | null> {
    this.#open();
    const next = checkNewTitle(title);
    const filter = options?.onlyIfUntitled === true ? { _id: threadId, title: '' } : { _id: threadId };
    return this.#do('renaming a thread', async () => {
      // One document update: with onlyIfUntitled a title set meanwhile is kept.
      const doc = await this.#threads.findOneAndUpdate(
        filter,
        { $set: { title: next } },
        { returnDocument: 'after' },
      );
      if (doc) return toThread(doc);
      const current = await this.#threads.findOne({ _id: threadId });
      return current ? toThread(current) : null;
    });
  }

  /**
   * In a transaction when the deployment has them. Without, the thread document goes first (so every later
   * write to the thread is refused `not_found`), then what was stored under it.
   */
  async deleteThread(threadId: string): Promise<DeleteThreadResult> {
    this.#open();
    return this.#locked(threadId, () =>
      this.#do('deleting a thread', () =>
        this.#tx(async (session): Promise<DeleteThreadResult> => {
          const opts = inSession(session);
          if (!(await this.#threads.findOne({ _id: threadId }, { ...opts, projection: { _id: 1 } })))
            return 'not_found';
          if (await this.#runs.findOne({ threadId, status: 'running' }, { ...opts, projection: { _id: 1 } }))
            return 'run_active';
          await this.#threads.deleteOne({ _id: threadId }, opts);
          await this.#events.deleteMany({ threadId }, opts);
          await this.#runs.deleteMany({ threadId }, opts);
          await this.#sessionItems.deleteMany({ threadId }, opts);
          await this.#counters.deleteOne({ _id: `session:${threadId}` }, opts);
          return 'deleted';
        }),
      ),
    );
  }

  async append(threadId: string, events: readonly AgentEvent[]): Promise<StoredEvent[]> {
    this.#open();
    const prepared = prepareEvents(threadId, events);
    return this.#locked(threadId, () =>
      this.#do('appending events', () =>
        this.#tx(async (session) => {
          if (prepared.length === 0) {
            if (
              !(await this.#threads.findOne(
                { _id: threadId },
                { ...inSession(session), projection: { _id: 1 } },
              ))
            ) {
              throw notFoundThread(threadId);
            }
            return [];
          }
          const now = Date.now();
          const first = await this.#reserveSeqs(threadId, prepared.length, now, session);
          const stored: StoredEvent[] = prepared.map((p, i) => ({
            seq: first + i,
            json: withSeq(p.body, first + i),
          }));
          await this.#insertEvents(threadId, stored, session);
          for (const p of prepared) {
            if (!p.ends) continue;
            await this.#runs.updateOne(
              { _id: p.event.runId, threadId, status: 'running' },
              { $set: { status: p.ends, endedAt: now } },
              inSession(session),
            );
          }
          return stored;
        }),
      ),
    );
  }

  async #appendMany(batches: readonly AppendBatch[]): Promise<StoredEvent[][]> {
    this.#open();
    const prepared = prepareBatches(batches);
    if (prepared.length === 0) return [];
    const threadIds = [...new Set(prepared.map((b) => b.threadId))];
    return this.#locked(threadIds, () =>
      this.#do('appending events', () =>
        this.#tx(async (session) => {
          const now = Date.now();
          const out: StoredEvent[][] = [];
          for (const { threadId, events } of prepared) {
            if (events.length === 0) {
              const found = await this.#threads.findOne(
                { _id: threadId },
                { ...inSession(session), projection: { _id: 1 } },
              );
              if (!found) throw notFoundThread(threadId);
              out.push([]);
              continue;
            }
            const first = await this.#reserveSeqs(threadId, events.length, now, session);
            const stored = events.map((p, i) => ({ seq: first + i, json: withSeq(p.body, first + i) }));
            await this.#insertEvents(threadId, stored, session);
            for (const p of events) {
              if (!p.ends) continue;
              await this.#runs.updateOne(
                { _id: p.event.runId, threadId, status: 'running' },
                { $set: { status: p.ends, endedAt: now } },
                inSession(session),
              );
            }
            out.push(stored);
          }
          return out;
        }),
      ),
    );
  }

  async read(threadId: string, options: { afterSeq: number; limit: number }): Promise<StoredEvent[]> {
    this.#open();
    const afterSeq = checkAfterSeq(options?.afterSeq);
    const limit = checkLimit('limit', options.limit);
    return this.#do('reading events', async () => {
      const docs = await this.#events
        .find({ threadId, seq: { $gt: afterSeq } }, { projection: { _id: 0, seq: 1, json: 1 } })
        .sort({ seq: 1 })
        .limit(limit)
        .toArray();
      return docs.map((d) => ({ seq: d.seq, json: d.json }));
    });
  }

  async lastSeq(threadId: string): Promise<number> {
    this.#open();
    return this.#do('reading the last seq', async () => {
      const doc = await this.#threads.findOne({ _id: threadId }, { projection: { lastSeq: 1 } });
      return doc?.lastSeq ?? 0;
    });
  }

  async startRun(input: {
    threadId: string;
    runId: string;
    userId: string;
    clientMessageId: string;
    userMessage: AgentEvent;
    lease?: { owner: string; ttlMs: number };
  }): Promise<StartRunResult> {
    this.#open();
    const prepared = prepareStartRun(input);
    const { threadId, runId, userId, clientMessageId } = input;
    const attempt = () =>
      this.#tx(async (session): Promise<StartRunResult> => {
        if (
          !(await this.#threads.findOne({ _id: threadId }, { ...inSession(session), projection: { _id: 1 } }))
        ) {
          throw notFoundThread(threadId);
        }
        const seen = await this.#runs.findOne({ threadId, clientMessageId }, inSession(session));
        if (seen) return { status: 'duplicate', run: toRun(seen) };
        const active = await this.#runs.findOne({ threadId, status: 'running' }, inSession(session));
        if (active) return { status: 'run_active', activeRun: toRun(active) };
        if (await this.#runs.findOne({ _id: runId }, { ...inSession(session), projection: { _id: 1 } })) {
          throw new StoreError('conflict', `run "${runId}" already exists`);
        }
        const now = Date.now();
        const doc: RunDoc = {
          _id: runId,
          threadId,
          userId,
          clientMessageId,
          status: 'running',
          startedAt: now,
        };
        if (input.lease) {
          doc.leaseOwner = input.lease.owner;
          doc.leaseExpires = now + input.lease.ttlMs;
        }
        // The unique indexes decide races with other processes: a duplicate key here means someone else won.
        await this.#runs.insertOne(doc, inSession(session));
        try {
          const seq = await this.#reserveSeqs(threadId, 1, now, session);
          const userMessage = { seq, json: withSeq(prepared.body, seq) };
          await this.#insertEvents(threadId, [userMessage], session);
          return { status: 'started', run: toRun(doc), userMessage };
        } catch (error) {
          if (!session) await this.#runs.deleteOne({ _id: runId }).catch(() => undefined);
          throw error;
        }
      });
    return this.#locked(threadId, () =>
      this.#do('starting a run', async () => {
        // Lost a race on a unique index: the next attempt sees the winner and answers duplicate/run_active.
        for (let i = 0; ; i++) {
          try {
            return await attempt();
          } catch (error) {
            if (!isDuplicateKey(error) || i >= 2) throw error;
          }
        }
      }),
    );
  }

  async getRun(runId: string): Promise<RunRecord | null> {
    this.#open();
    return this.#do('reading a run', async () => {
      const doc = await this.#runs.findOne({ _id: runId });
      return doc ? toRun(doc) : null;
    });
  }

  async activeRun(threadId: string): Promise<RunRecord | null> {
    this.#open();
    return this.#do('reading the active run', async () => {
      const doc = await this.#runs.findOne({ threadId, status: 'running' });
      return doc ? toRun(doc) : null;
    });
  }

  async listRunningRuns(): Promise<RunRecord[]> {
    this.#open();
    return this.#do('listing running runs', async () =>
      (await this.#runs.find({ status: 'running' }).sort({ startedAt: 1, _id: 1 }).toArray()).map(toRun),
    );
  }

  async renewLeases(owner: string, runIds: readonly string[], ttlMs: number): Promise<string[]> {
    this.#open();
    const input = checkRenew(owner, runIds, ttlMs);
    if (input.runIds.length === 0) return [];
    return this.#do('renewing leases', () =>
      this.#tx(async (session) => {
        const filter = { _id: { $in: input.runIds }, leaseOwner: input.owner, status: 'running' as const };
        await this.#runs.updateMany(
          filter,
          { $set: { leaseExpires: Date.now() + input.ttlMs } },
          inSession(session),
        );
        // Without transactions a run may end or be claimed between the two calls; it is then reported as not
        // renewed, which is what it is by the time the caller reads the answer.
        const held = await this.#runs
          .find(filter, { ...inSession(session), projection: { _id: 1 } })
          .toArray();
        return held.map((doc) => doc._id);
      }),
    );
  }

  async claimRuns(input: ClaimRunsInput): Promise<RunRecord[]> {
    this.#open();
    const { owner, ttlMs, limit, orphans } = checkClaim(input);
    return this.#do('claiming runs', async () => {
      const claimed: RunRecord[] = [];
      const taken: string[] = [];
      // One findOneAndUpdate per run: atomic on its document, so two instances never claim the same run.
      while (claimed.length < limit) {
        const now = Date.now();
        const which = [{ leaseExpires: { $lt: now } }];
        const or: Record<string, unknown>[] = orphans
          ? [...which, { leaseOwner: { $exists: false } }, { leaseOwner: null }, { leaseOwner: owner }]
          : which;
        const doc = await this.#runs.findOneAndUpdate(
          { status: 'running', _id: { $nin: taken }, $or: or },
          { $set: { leaseOwner: owner, leaseExpires: now + ttlMs } },
          { returnDocument: 'after', sort: { leaseExpires: 1 } },
        );
        if (!doc) break;
        taken.push(doc._id);
        claimed.push(toRun(doc));
      }
      return claimed;
    });
  }

  async getProfile(userId: string): Promise<Record<string, JsonValue>> {
    this.#open();
    return this.#do('reading a profile', async () => {
      const doc = await this.#profiles.findOne({ _id: userId });
      return doc ? (JSON.parse(doc.json) as Record<string, JsonValue>) : {};
    });
  }

  async patchProfile(userId: string, patch: Record<string, JsonValue>): Promise<Record<string, JsonValue>> {
    this.#open();
    checkId('userId', userId);
    checkJsonObject('profile patch', patch);
    return this.#do('patching a profile', async () => {
      // Optimistic compare-and-set on a version number: atomic on every deployment, no transaction needed.
      for (let i = 0; i < this.#maxProfileRetries; i++) {
        const doc = await this.#profiles.findOne({ _id: userId });
        const current = doc ? (JSON.parse(doc.json) as Record<string, JsonValue>) : {};
        const json = JSON.stringify(mergeProfile(current, patch));
        if (!doc) {
          try {
            await this.#profiles.insertOne({ _id: userId, json, version: 1 });
            return JSON.parse(json) as Record<string, JsonValue>;
          } catch (error) {
            if (isDuplicateKey(error)) continue;
            throw error;
          }
        }
        const { matchedCount } = await this.#profiles.updateOne(
          { _id: userId, version: doc.version },
          { $set: { json }, $inc: { version: 1 } },
        );
        if (matchedCount === 1) return JSON.parse(json) as Record<string, JsonValue>;
      }
      throw new StoreError(
        'conflict',
        `profile of "${userId}" changed concurrently ${this.#maxProfileRetries} times in a row; try again`,
      );
    });
  }

  async getSessionItems(threadId: string, limit?: number): Promise<JsonValue[]> {
    this.#open();
    const n = limit === undefined ? 0 : checkLimit('limit', limit);
    return this.#do('reading session items', async () => {
      // limit(0) is "no limit" in MongoDB.
      const docs = await this.#sessionItems.find({ threadId }).sort({ n: -1 }).limit(n).toArray();
      return docs.reverse().map((d) => JSON.parse(d.json) as JsonValue);
    });
  }

  async addSessionItems(threadId: string, items: readonly JsonValue[]): Promise<void> {
    this.#open();
    checkId('threadId', threadId);
    if (!Array.isArray(items)) throw new StoreError('invalid_message', 'session items must be an array');
    const texts = items.map((item, i) => JSON.stringify(checkJson(`session item [${i}]`, item)));
    if (texts.length === 0) return;
    await this.#do('adding session items', () =>
      this.#tx(async (session) => {
        const counter = await this.#counters.findOneAndUpdate(
          { _id: `session:${threadId}` },
          { $inc: { n: texts.length } },
          { upsert: true, returnDocument: 'after', ...inSession(session) },
        );
        const first = (counter?.n ?? texts.length) - texts.length + 1;
        const docs = texts.map((json, i) => ({ threadId, n: first + i, json }));
        try {
          await this.#sessionItems.insertMany(docs, { ...inSession(session), ordered: true });
        } catch (error) {
          if (!session)
            await this.#sessionItems.deleteMany({ threadId, n: { $gte: first, $lt: first + texts.length } });
          throw error;
        }
      }),
    );
  }

  async popSessionItem(threadId: string): Promise<JsonValue | null> {
    this.#open();
    return this.#do('popping a session item', async () => {
      const doc = await this.#sessionItems.findOneAndDelete({ threadId }, { sort: { n: -1 } });
      return doc ? (JSON.parse(doc.json) as JsonValue) : null;
    });
  }

  async clearSession(threadId: string): Promise<void> {
    this.#open();
    await this.#do('clearing a session', () => this.#sessionItems.deleteMany({ threadId }));
  }

  async getIdempotent(key: string): Promise<JsonValue | null> {
    this.#open();
    checkIdempotencyKey(key);
    return this.#do('reading an idempotency key', async () => {
      const doc = await this.#idempotency.findOne({ _id: key });
      return doc ? (JSON.parse(doc.json) as JsonValue) : null;
    });
  }

  async putIdempotent(key: string, value: JsonValue): Promise<JsonValue> {
    this.#open();
    checkIdempotencyKey(key);
    const json = JSON.stringify(checkJson('idempotent value', value));
    return this.#do('storing an idempotency key', async () => {
      try {
        await this.#idempotency.insertOne({ _id: key, json });
        return JSON.parse(json) as JsonValue;
      } catch (error) {
        if (!isDuplicateKey(error)) throw error;
      }
      const doc = await this.#idempotency.findOne({ _id: key });
      if (!doc)
        throw new StoreError('store_error', `idempotency key "${key}" vanished after a duplicate-key error`);
      return JSON.parse(doc.json) as JsonValue;
    });
  }

  async getRunState(threadId: string, runId: string): Promise<string | null> {
    this.#open();
    checkRunState(threadId, runId);
    return this.#do('reading a run state', async () => {
      const doc = await this.#runStates.findOne({ _id: JSON.stringify([threadId, runId]) });
      return doc ? doc.state : null;
    });
  }

  async putRunState(threadId: string, runId: string, state: string): Promise<void> {
    this.#open();
    const text = checkRunState(threadId, runId, state);
    await this.#do('storing a run state', async () => {
      await this.#runStates.replaceOne(
        { _id: JSON.stringify([threadId, runId]) },
        { state: text },
        { upsert: true },
      );
    });
  }

  async deleteRunState(threadId: string, runId: string): Promise<void> {
    this.#open();
    checkRunState(threadId, runId);
    await this.#do('deleting a run state', async () => {
      await this.#runStates.deleteOne({ _id: JSON.stringify([threadId, runId]) });
    });
  }

  async pruneOlderThan(cutoff: number, options?: { limit?: number }): Promise<PruneResult> {
    this.#open();
    const input = checkPrune(cutoff, options);
    return this.#do('pruning old threads', () =>
      this.#tx(async (session) => {
        const old = await this.#threads
          .find({ updatedAt: { $lt: input.cutoff } }, { ...inSession(session), projection: { _id: 1 } })
          .sort({ updatedAt: 1, _id: 1 })
          .limit(input.limit)
          .toArray();
        const running = new Set(
          (
            await this.#runs
              .find(
                { threadId: { $in: old.map((t) => t._id) }, status: 'running' },
                { ...inSession(session), projection: { threadId: 1 } },
              )
              .toArray()
          ).map((r) => r.threadId),
        );
        const result: PruneResult = { threads: 0, events: 0, runs: 0, sessionItems: 0, more: false };
        // A thread is removed only if it is still unchanged and idle at the moment of its delete: a run start or
        // an append moves updatedAt past the cutoff first.
        for (const { _id: threadId } of old) {
          if (running.has(threadId)) continue;
          const gone = await this.#threads.deleteOne(
            { _id: threadId, updatedAt: { $lt: input.cutoff } },
            inSession(session),
          );
          if (gone.deletedCount === 0) continue;
          result.threads++;
          result.events += (await this.#events.deleteMany({ threadId }, inSession(session))).deletedCount;
          result.runs += (await this.#runs.deleteMany({ threadId }, inSession(session))).deletedCount;
          result.sessionItems += (
            await this.#sessionItems.deleteMany({ threadId }, inSession(session))
          ).deletedCount;
          await this.#counters.deleteOne({ _id: `session:${threadId}` }, inSession(session));
        }
        result.more = old.length === input.limit;
        return result;
      }),
    );
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.allSettled([...this.#locks.values()]);
    if (this.#ownsClient) await this.#client.close();
  }

  #open(): void {
    if (this.#closed) throw closedError();
  }

  /** Reserves `n` consecutive seqs of a thread and returns the first. Throws `not_found` for a missing thread. */
  async #reserveSeqs(
    threadId: string,
    n: number,
    now: number,
    session: ClientSession | undefined,
  ): Promise<number> {
    const thread = await this.#threads.findOneAndUpdate(
      { _id: threadId },
      { $inc: { lastSeq: n }, $max: { updatedAt: now } },
      { returnDocument: 'after', projection: { lastSeq: 1 }, ...inSession(session) },
    );
    if (!thread) throw notFoundThread(threadId);
    return thread.lastSeq - n + 1;
  }

  async #insertEvents(
    threadId: string,
    stored: readonly StoredEvent[],
    session: ClientSession | undefined,
  ): Promise<void> {
    const docs: EventDoc[] = stored.map((e) => ({ threadId, seq: e.seq, json: e.json }));
    try {
      await this.#events.insertMany(docs, { ...inSession(session), ordered: true });
    } catch (error) {
      // Without a transaction, undo whatever part of the batch landed: all or nothing.
      const first = stored[0]?.seq ?? 0;
      const last = stored[stored.length - 1]?.seq ?? 0;
      if (!session)
        await this.#events.deleteMany({ threadId, seq: { $gte: first, $lte: last } }).catch(() => undefined);
      throw error;
    }
  }

  async #do<T>(doing: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (error) {
      throw toStoreError(error, doing);
    }
  }

  /** Runs `fn` in a transaction when the deployment has them (the driver retries transient conflicts), else directly. */
  async #tx<T>(fn: (session: ClientSession | undefined) => Promise<T>): Promise<T> {
    if (!this.transactions) return fn(undefined);
    const session = this.#client.startSession();
    try {
      return await session.withTransaction(() => fn(session), {
        readConcern: { level: 'snapshot' },
        writeConcern: { w: 'majority' },
      });
    } finally {
      await session.endSession();
    }
  }

  /** Chains writes of the given threads inside this process, so they reserve and insert seqs in order. */
  async #locked<T>(threadIds: string | readonly string[], fn: () => Promise<T>): Promise<T> {
    const ids = typeof threadIds === 'string' ? [threadIds] : threadIds;
    const previous = ids.map((id) => this.#locks.get(id)).filter((p) => p !== undefined);
    const before = previous.length === 0 ? Promise.resolve() : Promise.all(previous);
    const next = before.then(fn, fn);
    const tail = next.catch(() => undefined);
    for (const id of ids) this.#locks.set(id, tail);
    try {
      return await next;
    } finally {
      for (const id of ids) if (this.#locks.get(id) === tail) this.#locks.delete(id);
    }
  }
}

/**
 * Connects to MongoDB, checks whether it supports transactions and creates the store's indexes. Throws
 * StoreError `store_error` if the server can't be reached (after the driver's server selection timeout,
 * 10 s by default here) and `invalid_message` for bad options.
 *
 * @example
 * import { openMongoStore } from '@threadline/relay/mongodb';
 * const store = await openMongoStore({ uri: 'mongodb://127.0.0.1:27017/?replicaSet=rs0', dbName: 'threadline' });
 * const relay = createRelay({ store, agent, tokens, toolsBaseUrl, tools });
 */
export async function openMongoStore(options: MongoStoreOptions): Promise<MongoStore> {
  if (typeof options !== 'object' || options === null)
    throw new StoreError('invalid_options', 'openMongoStore needs options');
  const hasUri = typeof options.uri === 'string' && options.uri !== '';
  const hasClient = options.client instanceof MongoClient;
  if (hasUri === hasClient)
    throw new StoreError('invalid_options', 'openMongoStore needs exactly one of `uri` or `client`');
  if (typeof options.dbName !== 'string' || !/^[^/\\. "$*<>:|?]{1,63}$/.test(options.dbName)) {
    throw new StoreError('invalid_options', 'dbName must be a valid MongoDB database name');
  }
  const prefix = options.collectionPrefix ?? 'threadline_';
  if (typeof prefix !== 'string' || !/^[A-Za-z0-9_]{0,32}$/.test(prefix)) {
    throw new StoreError(
      'invalid_options',
      'collectionPrefix may contain only letters, digits and _ (at most 32)',
    );
  }
  const mode = options.transactions ?? 'auto';
  if (mode !== 'auto' && mode !== 'required' && mode !== 'off') {
    throw new StoreError('invalid_options', "transactions must be 'auto', 'required' or 'off'");
  }
  const maxProfileRetries = options.maxProfileRetries ?? 50;
  if (!Number.isSafeInteger(maxProfileRetries) || maxProfileRetries < 1) {
    throw new StoreError('invalid_options', 'maxProfileRetries must be a positive integer');
  }
  const client = hasClient
    ? (options.client as MongoClient)
    : new MongoClient(options.uri as string, { serverSelectionTimeoutMS: 10_000, ...options.clientOptions });
  try {
    if (!hasClient) await client.connect();
    const db = client.db(options.dbName);
    const hello = await db.admin().command({ hello: 1 });
    const supported = typeof hello['setName'] === 'string' || hello['msg'] === 'isdbgrid';
    if (mode === 'required' && !supported) {
      throw new StoreError(
        'store_error',
        'this MongoDB deployment has no transactions (a standalone server); run it as a replica set or use transactions: "auto"',
      );
    }
    const store = new MongoStore({
      client,
      ownsClient: !hasClient,
      db,
      prefix,
      transactions: mode !== 'off' && supported,
      maxProfileRetries,
    });
    await store.ensureIndexes();
    return store;
  } catch (error) {
    if (!hasClient) await client.close().catch(() => undefined);
    throw toStoreError(error, `opening the MongoDB store (database "${options.dbName}")`);
  }
}
