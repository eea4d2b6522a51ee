import type { ClientSession, Collection, Db } from 'mongodb';
import type { RunRecord, RunStatus, ThreadRecord } from '../store.js';

// The MongoDB store's documents and collections, their indexes and the record mappers.

/** A document of the Thread collection. */
export interface ThreadDoc {
  _id: string;
  ownerId: string;
  title: string;
  createdAt: number;
  updatedAt: number;
  /** The seq counter: appends reserve `n` seqs with one `$inc`. */
  lastSeq: number;
}
/** A document of the Event collection. */
export interface EventDoc {
  threadId: string;
  seq: number;
  json: string;
}
/** A document of the Run collection. */
export interface RunDoc {
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
/** A document of the Profile collection. */
export interface ProfileDoc {
  _id: string;
  json: string;
  version: number;
}
/** A document of the SessionItem collection. */
export interface SessionItemDoc {
  threadId: string;
  n: number;
  json: string;
}
/** A document of the Counter collection. */
export interface CounterDoc {
  _id: string;
  n: number;
}
/** A document of the Idempotency collection. */
export interface IdempotencyDoc {
  _id: string;
  json: string;
}

/** A paused run's state; `_id` is the JSON text of `[threadId, runId]`. */
export interface RunStateDoc {
  _id: string;
  state: string;
}

/** Driver options for an optional session (exactOptionalPropertyTypes forbids `session: undefined`). */
export function inSession(session: ClientSession | undefined): { session?: ClientSession } {
  return session ? { session } : {};
}

const DUPLICATE_KEY = 11000;
/** True for MongoDB's duplicate-key error (a unique index refused the write). */
export function isDuplicateKey(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { code?: unknown }).code === DUPLICATE_KEY;
}

/** A thread record from its document. */
export function toThread(doc: ThreadDoc): ThreadRecord {
  return {
    threadId: doc._id,
    ownerId: doc.ownerId,
    title: doc.title,
    createdAt: doc.createdAt,
    updatedAt: doc.updatedAt,
  };
}
/** A run record (with its lease) from its document. */
export function toRun(doc: RunDoc): RunRecord {
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

/** The store's collections, each named `<prefix><name>`. */
export interface MongoCollections {
  threads: Collection<ThreadDoc>;
  events: Collection<EventDoc>;
  runs: Collection<RunDoc>;
  profiles: Collection<ProfileDoc>;
  sessionItems: Collection<SessionItemDoc>;
  counters: Collection<CounterDoc>;
  idempotency: Collection<IdempotencyDoc>;
  runStates: Collection<RunStateDoc>;
}

/** The collections of prefix `p` in `db`. */
export function openCollections(db: Db, p: string): MongoCollections {
  return {
    threads: db.collection<ThreadDoc>(`${p}threads`),
    events: db.collection<EventDoc>(`${p}events`),
    runs: db.collection<RunDoc>(`${p}runs`),
    profiles: db.collection<ProfileDoc>(`${p}profiles`),
    sessionItems: db.collection<SessionItemDoc>(`${p}session_items`),
    counters: db.collection<CounterDoc>(`${p}counters`),
    idempotency: db.collection<IdempotencyDoc>(`${p}idempotency`),
    runStates: db.collection<RunStateDoc>(`${p}run_states`),
  };
}

/** Creates the indexes the store relies on (idempotent). */
export async function ensureIndexes(c: MongoCollections): Promise<void> {
  await c.threads.createIndex({ ownerId: 1, updatedAt: -1, _id: 1 }, { name: 'by_owner' });
  await c.events.createIndex({ threadId: 1, seq: 1 }, { name: 'thread_seq_unique', unique: true });
  await c.runs.createIndex(
    { threadId: 1, clientMessageId: 1 },
    { name: 'thread_message_unique', unique: true },
  );
  await c.runs.createIndex(
    { threadId: 1 },
    { name: 'one_running_per_thread', unique: true, partialFilterExpression: { status: 'running' } },
  );
  await c.runs.createIndex(
    { status: 1, startedAt: 1 },
    { name: 'running', partialFilterExpression: { status: 'running' } },
  );
  await c.runs.createIndex(
    { status: 1, leaseExpires: 1 },
    { name: 'running_by_lease', partialFilterExpression: { status: 'running' } },
  );
  await c.sessionItems.createIndex({ threadId: 1, n: -1 }, { name: 'thread_n_unique', unique: true });
}
