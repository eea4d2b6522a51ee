import type { AgentEvent } from '@threadline/contracts';
import type { ClientSession, Db, MongoClient } from 'mongodb';
import type { ToolStore } from '@threadline/tools-kit';
import { ToolStorePart } from '../tool-store-part.js';
import { StoreError } from '../../errors.js';
import type {
  AppendBatch,
  ClaimRunsInput,
  DeleteThreadResult,
  EventStore,
  PruneResult,
  RunRecord,
  StartRunResult,
  StoredEvent,
  ThreadRecord,
} from '../store.js';
import {
  checkAfterSeq,
  checkClaim,
  checkId,
  checkLimit,
  checkNewTitle,
  checkPrune,
  checkRenew,
  checkTitle,
  closedError,
  notFoundThread,
  prepareBatches,
  prepareEvents,
  prepareStartRun,
  threadListLimit,
  toStoreError,
  withSeq,
} from '../store-input.js';
import {
  ensureIndexes,
  inSession,
  isDuplicateKey,
  openCollections,
  toRun,
  toThread,
  type MongoCollections,
  type ThreadDoc,
} from './docs.js';
import { MongoToolStorage } from './tool-store.js';
import { insertEvents, pruneIn, reserveSeqs, startRunIn, ThreadLocks } from './writes.js';

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
export class MongoStore extends ToolStorePart implements EventStore, ToolStore {
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
  readonly #c: MongoCollections;
  readonly #tools: MongoToolStorage;
  /** Per-thread write chains: appends of one thread from this process never overlap. */
  readonly #locks = new ThreadLocks();
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
    super();
    this.#client = options.client;
    this.#ownsClient = options.ownsClient;
    this.transactions = options.transactions;
    if (options.transactions) this.appendMany = (batches) => this.#appendMany(batches);
    this.#c = openCollections(options.db, options.prefix);
    this.#tools = new MongoToolStorage(this.#c, options.maxProfileRetries, {
      open: () => this.#open(),
      do: (doing, fn) => this.#do(doing, fn),
      tx: (fn) => this.#tx(fn),
    });
  }

  /** Creates the indexes the store relies on (idempotent). Called by {@link openMongoStore}. */
  async ensureIndexes(): Promise<void> {
    await ensureIndexes(this.#c);
  }

  async createThread(input: { threadId: string; ownerId: string; title?: string }): Promise<ThreadRecord> {
    this.#open();
    const threadId = checkId('threadId', input?.threadId);
    const ownerId = checkId('ownerId', input.ownerId);
    const title = checkTitle(input.title);
    const now = Date.now();
    const doc: ThreadDoc = { _id: threadId, ownerId, title, createdAt: now, updatedAt: now, lastSeq: 0 };
    try {
      await this.#c.threads.insertOne(doc);
    } catch (error) {
      if (isDuplicateKey(error)) throw new StoreError('conflict', `thread "${threadId}" already exists`);
      throw toStoreError(error, 'creating a thread');
    }
    return toThread(doc);
  }

  async getThread(threadId: string): Promise<ThreadRecord | null> {
    this.#open();
    return this.#do('reading a thread', async () => {
      const doc = await this.#c.threads.findOne({ _id: threadId });
      return doc ? toThread(doc) : null;
    });
  }

  async listThreads(ownerId: string, options?: { limit?: number }): Promise<ThreadRecord[]> {
    this.#open();
    const limit = threadListLimit(options);
    return this.#do('listing threads', async () =>
      (await this.#c.threads.find({ ownerId }).sort({ updatedAt: -1, _id: 1 }).limit(limit).toArray()).map(
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
      const doc = await this.#c.threads.findOneAndUpdate(
        filter,
        { $set: { title: next } },
        { returnDocument: 'after' },
      );
      if (doc) return toThread(doc);
      const current = await this.#c.threads.findOne({ _id: threadId });
      return current ? toThread(current) : null;
    });
  }

  /**
   * In a transaction when the deployment has them. Without, the thread document goes first (so every later
   * write to the thread is refused `not_found`), then what was stored under it.
   */
  async deleteThread(threadId: string): Promise<DeleteThreadResult> {
    this.#open();
    return this.#locks.run(threadId, () =>
      this.#do('deleting a thread', () =>
        this.#tx(async (session): Promise<DeleteThreadResult> => {
          const opts = inSession(session);
          if (!(await this.#c.threads.findOne({ _id: threadId }, { ...opts, projection: { _id: 1 } })))
            return 'not_found';
          if (
            await this.#c.runs.findOne({ threadId, status: 'running' }, { ...opts, projection: { _id: 1 } })
          )
            return 'run_active';
          await this.#c.threads.deleteOne({ _id: threadId }, opts);
          await this.#c.events.deleteMany({ threadId }, opts);
          await this.#c.runs.deleteMany({ threadId }, opts);
          await this.#c.sessionItems.deleteMany({ threadId }, opts);
          await this.#c.counters.deleteOne({ _id: `session:${threadId}` }, opts);
          return 'deleted';
        }),
      ),
    );
  }

  async append(threadId: string, events: readonly AgentEvent[]): Promise<StoredEvent[]> {
    this.#open();
    const prepared = prepareEvents(threadId, events);
    return this.#locks.run(threadId, () =>
      this.#do('appending events', () =>
        this.#tx(async (session) => {
          if (prepared.length === 0) {
            if (
              !(await this.#c.threads.findOne(
                { _id: threadId },
                { ...inSession(session), projection: { _id: 1 } },
              ))
            ) {
              throw notFoundThread(threadId);
            }
            return [];
          }
          const now = Date.now();
          const first = await reserveSeqs(this.#c.threads, threadId, prepared.length, now, session);
          const stored: StoredEvent[] = prepared.map((p, i) => ({
            seq: first + i,
            json: withSeq(p.body, first + i),
          }));
          await insertEvents(this.#c.events, threadId, stored, session);
          for (const p of prepared) {
            if (!p.ends) continue;
            await this.#c.runs.updateOne(
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
    return this.#locks.run(threadIds, () =>
      this.#do('appending events', () =>
        this.#tx(async (session) => {
          const now = Date.now();
          const out: StoredEvent[][] = [];
          for (const { threadId, events } of prepared) {
            if (events.length === 0) {
              const found = await this.#c.threads.findOne(
                { _id: threadId },
                { ...inSession(session), projection: { _id: 1 } },
              );
              if (!found) throw notFoundThread(threadId);
              out.push([]);
              continue;
            }
            const first = await reserveSeqs(this.#c.threads, threadId, events.length, now, session);
            const stored = events.map((p, i) => ({ seq: first + i, json: withSeq(p.body, first + i) }));
            await insertEvents(this.#c.events, threadId, stored, session);
            for (const p of events) {
              if (!p.ends) continue;
              await this.#c.runs.updateOne(
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
      const docs = await this.#c.events
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
      const doc = await this.#c.threads.findOne({ _id: threadId }, { projection: { lastSeq: 1 } });
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
    const { threadId } = input;
    const attempt = () => this.#tx((session) => startRunIn(this.#c, input, prepared.body, session));
    return this.#locks.run(threadId, () =>
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
      const doc = await this.#c.runs.findOne({ _id: runId });
      return doc ? toRun(doc) : null;
    });
  }

  async activeRun(threadId: string): Promise<RunRecord | null> {
    this.#open();
    return this.#do('reading the active run', async () => {
      const doc = await this.#c.runs.findOne({ threadId, status: 'running' });
      return doc ? toRun(doc) : null;
    });
  }

  async listRunningRuns(): Promise<RunRecord[]> {
    this.#open();
    return this.#do('listing running runs', async () =>
      (await this.#c.runs.find({ status: 'running' }).sort({ startedAt: 1, _id: 1 }).toArray()).map(toRun),
    );
  }

  async renewLeases(owner: string, runIds: readonly string[], ttlMs: number): Promise<string[]> {
    this.#open();
    const input = checkRenew(owner, runIds, ttlMs);
    if (input.runIds.length === 0) return [];
    return this.#do('renewing leases', () =>
      this.#tx(async (session) => {
        const filter = { _id: { $in: input.runIds }, leaseOwner: input.owner, status: 'running' as const };
        await this.#c.runs.updateMany(
          filter,
          { $set: { leaseExpires: Date.now() + input.ttlMs } },
          inSession(session),
        );
        // Without transactions a run may end or be claimed between the two calls; it is then reported as not
        // renewed, which is what it is by the time the caller reads the answer.
        const held = await this.#c.runs
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
        const doc = await this.#c.runs.findOneAndUpdate(
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

  /** The ToolStore part every ToolStore method of this store forwards to. */
  protected override get toolStore(): ToolStore {
    return this.#tools;
  }

  async pruneOlderThan(cutoff: number, options?: { limit?: number }): Promise<PruneResult> {
    this.#open();
    const input = checkPrune(cutoff, options);
    return this.#do('pruning old threads', () => this.#tx((session) => pruneIn(this.#c, input, session)));
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#locks.settled();
    if (this.#ownsClient) await this.#client.close();
  }

  #open(): void {
    if (this.#closed) throw closedError();
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
}
