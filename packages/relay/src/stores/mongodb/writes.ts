import type { ClientSession, Collection } from 'mongodb';
import { StoreError } from '../../errors.js';
import type { PruneResult, StartRunInput, StartRunResult, StoredEvent } from '../store.js';
import { notFoundThread, withSeq } from '../store-input.js';
import {
  inSession,
  toRun,
  type EventDoc,
  type MongoCollections,
  type RunDoc,
  type ThreadDoc,
} from './docs.js';

// The MongoDB store's writes: seq reservation, batch inserts, a run start and a prune (in a transaction when
// `session` is set), and the per-thread write order in one process.

/** Reserves `n` consecutive seqs of a thread and returns the first. Throws `not_found` for a missing thread. */
export async function reserveSeqs(
  threads: Collection<ThreadDoc>,
  threadId: string,
  n: number,
  now: number,
  session: ClientSession | undefined,
): Promise<number> {
  const thread = await threads.findOneAndUpdate(
    { _id: threadId },
    { $inc: { lastSeq: n }, $max: { updatedAt: now } },
    { returnDocument: 'after', projection: { lastSeq: 1 }, ...inSession(session) },
  );
  if (!thread) throw notFoundThread(threadId);
  return thread.lastSeq - n + 1;
}

/** Inserts a batch of sequenced events; without a transaction, removes what landed of it when it fails. */
export async function insertEvents(
  events: Collection<EventDoc>,
  threadId: string,
  stored: readonly StoredEvent[],
  session: ClientSession | undefined,
): Promise<void> {
  const docs: EventDoc[] = stored.map((e) => ({ threadId, seq: e.seq, json: e.json }));
  try {
    await events.insertMany(docs, { ...inSession(session), ordered: true });
  } catch (error) {
    // Without a transaction, undo whatever part of the batch landed: all or nothing.
    const first = stored[0]?.seq ?? 0;
    const last = stored[stored.length - 1]?.seq ?? 0;
    if (!session)
      await events.deleteMany({ threadId, seq: { $gte: first, $lte: last } }).catch(() => undefined);
    throw error;
  }
}

/** Per-thread write chains of one process: writes naming a thread run one after another. */
export class ThreadLocks {
  readonly #chains = new Map<string, Promise<unknown>>();

  /** Chains writes of the given threads inside this process, so they reserve and insert seqs in order. */
  async run<T>(threadIds: string | readonly string[], fn: () => Promise<T>): Promise<T> {
    const ids = typeof threadIds === 'string' ? [threadIds] : threadIds;
    const previous = ids.map((id) => this.#chains.get(id)).filter((p) => p !== undefined);
    const before = previous.length === 0 ? Promise.resolve() : Promise.all(previous);
    const next = before.then(fn, fn);
    const tail = next.catch(() => undefined);
    for (const id of ids) this.#chains.set(id, tail);
    try {
      return await next;
    } finally {
      for (const id of ids) if (this.#chains.get(id) === tail) this.#chains.delete(id);
    }
  }

  /** Resolves once every write started so far has settled. */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.#chains.values()]);
  }
}

/**
 * startRun on a validated input (`body`: its first event's JSON without seq): `duplicate`, `run_active`, or the
 * run and its first event written. Without a transaction, a failed event write removes the run again.
 */
export async function startRunIn(
  c: MongoCollections,
  input: StartRunInput,
  body: string,
  session: ClientSession | undefined,
): Promise<StartRunResult> {
  const { threadId, runId, userId, clientMessageId } = input;
  if (!(await c.threads.findOne({ _id: threadId }, { ...inSession(session), projection: { _id: 1 } }))) {
    throw notFoundThread(threadId);
  }
  const seen = await c.runs.findOne({ threadId, clientMessageId }, inSession(session));
  if (seen) return { status: 'duplicate', run: toRun(seen) };
  const active = await c.runs.findOne({ threadId, status: 'running' }, inSession(session));
  if (active) return { status: 'run_active', activeRun: toRun(active) };
  if (await c.runs.findOne({ _id: runId }, { ...inSession(session), projection: { _id: 1 } })) {
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
  await c.runs.insertOne(doc, inSession(session));
  try {
    const seq = await reserveSeqs(c.threads, threadId, 1, now, session);
    const userMessage = { seq, json: withSeq(body, seq) };
    await insertEvents(c.events, threadId, [userMessage], session);
    return { status: 'started', run: toRun(doc), userMessage };
  } catch (error) {
    if (!session) await c.runs.deleteOne({ _id: runId }).catch(() => undefined);
    throw error;
  }
}

/** pruneOlderThan on validated input: removes idle threads whole, never one with a running run. */
export async function pruneIn(
  c: MongoCollections,
  input: { cutoff: number; limit: number },
  session: ClientSession | undefined,
): Promise<PruneResult> {
  const old = await c.threads
    .find({ updatedAt: { $lt: input.cutoff } }, { ...inSession(session), projection: { _id: 1 } })
    .sort({ updatedAt: 1, _id: 1 })
    .limit(input.limit)
    .toArray();
  const running = new Set(
    (
      await c.runs
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
    const gone = await c.threads.deleteOne(
      { _id: threadId, updatedAt: { $lt: input.cutoff } },
      inSession(session),
    );
    if (gone.deletedCount === 0) continue;
    result.threads++;
    result.events += (await c.events.deleteMany({ threadId }, inSession(session))).deletedCount;
    result.runs += (await c.runs.deleteMany({ threadId }, inSession(session))).deletedCount;
    result.sessionItems += (await c.sessionItems.deleteMany({ threadId }, inSession(session))).deletedCount;
    await c.counters.deleteOne({ _id: `session:${threadId}` }, inSession(session));
  }
  result.more = old.length === input.limit;
  return result;
}
