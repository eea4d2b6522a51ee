import type {
  RunErrorEvent,
  RunFinishedEvent,
  TextMessageChunkEvent,
  UserMessageEvent,
} from '@threadline/contracts';
import type { ToolStore } from '@threadline/tools-kit';
import { expect } from 'vitest';
import type { EventStore } from '../store.js';

// Shared by the conformance areas: the suite's context, event builders and assertions.

/** What a conformance factory returns: a fresh (or freshly namespaced) store and how to dispose of it. */
export interface ConformanceStore {
  store: EventStore;
  /** Called after each test, after `store.close()`: delete files, drop databases. */
  cleanup?(): Promise<void>;
  /**
   * Opens another handle on the same data, as a second relay instance would (its own connection pool or file
   * handle); closed by the suite. Without it the lease tests use `store` for both instances.
   */
  openSecond?(): Promise<EventStore>;
}

/** What every area of the suite reads: the running test's store (a new one per test) and a thread maker. */
export interface SuiteContext {
  /** The running test's store. */
  readonly store: EventStore;
  /** The running test's factory result (its `openSecond`), undefined between tests. */
  readonly current: ConformanceStore | undefined;
  /** Creates a thread with an id unique to the test; returns the id. */
  newThread(ownerId?: string): Promise<string>;
}

let counter = 0;
/** Ids unique per test, so a factory may hand out stores that share one database. */
export function uid(prefix: string): string {
  counter += 1;
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${counter}`;
}

export const TS = 1_700_000_000_000;

export function chunk(
  threadId: string,
  runId: string,
  delta: string,
  messageId = 'msg-1',
): TextMessageChunkEvent {
  return { type: 'TEXT_MESSAGE_CHUNK', threadId, runId, ts: TS, messageId, delta };
}
export function finished(threadId: string, runId: string): RunFinishedEvent {
  return { type: 'RUN_FINISHED', threadId, runId, ts: TS };
}
export function failed(threadId: string, runId: string): RunErrorEvent {
  return { type: 'RUN_ERROR', threadId, runId, ts: TS, message: 'boom', code: 'model_error' };
}
export function userMessage(
  threadId: string,
  runId: string,
  clientMessageId: string,
  userId: string,
): UserMessageEvent {
  return {
    type: 'USER_MESSAGE',
    threadId,
    runId,
    ts: TS,
    messageId: `m-${clientMessageId}`,
    clientMessageId,
    userId,
    text: 'hello',
  };
}
export function startInput(threadId: string, runId: string, clientMessageId: string, userId = 'user-1') {
  return {
    threadId,
    runId,
    userId,
    clientMessageId,
    userMessage: userMessage(threadId, runId, clientMessageId, userId),
  };
}

/** Asserts a rejection with a relay StoreError of `code` (by name and code, so copies of the class across bundles match). */
export async function expectStoreError(promise: Promise<unknown>, code: string): Promise<Error> {
  let caught: unknown;
  try {
    await promise;
  } catch (error) {
    caught = error;
  }
  expect(caught, `expected a StoreError with code "${code}"`).toBeInstanceOf(Error);
  expect((caught as Error).name).toBe('StoreError');
  expect((caught as { code?: unknown }).code).toBe(code);
  return caught as Error;
}

/**
 * The store's tools-kit {@link ToolStore} part when it implements that port too (the SQLite, PostgreSQL and
 * MongoDB stores do, the memory store does not): then deleting or pruning a thread must remove its session.
 */
export function toolPart(store: EventStore): ToolStore | null {
  const tools = store as Partial<ToolStore>;
  return typeof tools.addSessionItems === 'function' &&
    typeof tools.getSessionItems === 'function' &&
    typeof tools.patchProfile === 'function' &&
    typeof tools.getProfile === 'function'
    ? (store as EventStore & ToolStore)
    : null;
}

/** Waits until `Date.now()` has moved on, so "most recently updated" is decidable without a fake clock. */
export async function nextMillisecond(): Promise<void> {
  const start = Date.now();
  while (Date.now() <= start) await new Promise((resolve) => setImmediate(resolve));
}
