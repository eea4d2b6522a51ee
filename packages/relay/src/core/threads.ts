import { randomUUID } from 'node:crypto';
import type { ThreadRecord } from '../stores/store.js';
import { MAX_TITLE_LENGTH } from '../stores/store-input.js';
import { RelayError } from '../errors.js';
import { checkId, checkOpen, storeCall, threadFor } from './context.js';
import type { RelayContext } from './context.js';

// The thread API: create, list, read, rename and delete a user's threads, with the relay's checks.

/** The thread if `user` owns it; `not_found` as for a missing one otherwise. */
async function ownedThread(ctx: RelayContext, user: { id: string }, threadId: string): Promise<ThreadRecord> {
  const { store } = ctx;
  const thread = await storeCall('reading the thread', () => store.getThread(threadId));
  if (!thread || thread.ownerId !== user.id) {
    throw new RelayError('not_found', `thread ${threadId} does not exist or is not yours`);
  }
  return thread;
}

/** Creates a thread owned by the user (see {@link Relay.createThread}). */
export async function createThread(
  ctx: RelayContext,
  input: {
    user: { id: string };
    title?: string;
    threadId?: string;
  },
): Promise<ThreadRecord> {
  const { store } = ctx;
  checkOpen(ctx);
  checkId(input?.user?.id, 'user.id');
  const threadId = input.threadId ?? `thr_${randomUUID()}`;
  checkId(threadId, 'threadId');
  const title = input.title === undefined ? '' : typeof input.title === 'string' ? input.title.trim() : null;
  if (title === null || title.length > MAX_TITLE_LENGTH) {
    throw new RelayError('invalid_message', `title must be at most ${MAX_TITLE_LENGTH} characters`);
  }
  return storeCall('creating the thread', () =>
    store.createThread({ threadId, ownerId: input.user.id, title }),
  );
}

/** The user's own threads, most recently updated first. */
export async function listThreads(
  ctx: RelayContext,
  input: { user: { id: string }; limit?: number },
): Promise<ThreadRecord[]> {
  const { store } = ctx;
  checkOpen(ctx);
  checkId(input?.user?.id, 'user.id');
  const limit = input.limit ?? 100;
  if (!Number.isSafeInteger(limit) || limit < 1 || limit > 1_000) {
    throw new RelayError('invalid_message', 'limit must be an integer from 1 to 1000');
  }
  return storeCall('listing threads', () => store.listThreads(input.user.id, { limit }));
}

/** One thread the user may use; `not_found` otherwise. */
export async function getThread(
  ctx: RelayContext,
  input: { user: { id: string }; threadId: string },
): Promise<ThreadRecord> {
  checkOpen(ctx);
  checkId(input?.user?.id, 'user.id');
  checkId(input.threadId, 'threadId');
  return threadFor(ctx, input.user, input.threadId);
}

/** Renames the user's own thread. */
export async function renameThread(
  ctx: RelayContext,
  input: {
    user: { id: string };
    threadId: string;
    title: string;
  },
): Promise<ThreadRecord> {
  const { store } = ctx;
  checkOpen(ctx);
  checkId(input?.user?.id, 'user.id');
  checkId(input.threadId, 'threadId');
  const title = typeof input.title === 'string' ? input.title.trim() : '';
  if (title.length === 0 || title.length > MAX_TITLE_LENGTH) {
    throw new RelayError('invalid_message', `title must be 1 to ${MAX_TITLE_LENGTH} characters`);
  }
  await ownedThread(ctx, input.user, input.threadId);
  const renamed = await storeCall('renaming the thread', () => store.renameThread(input.threadId, title));
  if (!renamed) throw new RelayError('not_found', `thread ${input.threadId} does not exist or is not yours`);
  return renamed;
}

/** Deletes the user's own thread and ends every subscription to it. */
export async function deleteThread(
  ctx: RelayContext,
  input: { user: { id: string }; threadId: string },
): Promise<void> {
  const { store, pubsub } = ctx;
  checkOpen(ctx);
  checkId(input?.user?.id, 'user.id');
  checkId(input.threadId, 'threadId');
  const threadId = input.threadId;
  await ownedThread(ctx, input.user, threadId);
  const outcome = await storeCall('deleting the thread', () => store.deleteThread(threadId));
  if (outcome === 'run_active') {
    throw new RelayError(
      'run_active',
      `thread ${threadId} has a run in progress; stop it, then delete the thread`,
    );
  }
  // Gone (by this call, or by a delete that raced it): either way no subscription may stay open on it.
  endSubscriptionsOf(ctx, threadId);
  pubsub.publishControl?.({ type: 'thread_deleted', threadId });
  if (outcome === 'not_found') {
    throw new RelayError('not_found', `thread ${threadId} does not exist or is not yours`);
  }
}

/** Ends this process's subscriptions to a deleted thread with `thread_deleted`. */
export function endSubscriptionsOf(ctx: RelayContext, threadId: string): void {
  if (typeof threadId !== 'string') return;
  for (const subscription of [...ctx.subscriptions]) {
    if (subscription.threadId === threadId)
      subscription.fail(new RelayError('thread_deleted', `thread ${threadId} was deleted`));
  }
}
