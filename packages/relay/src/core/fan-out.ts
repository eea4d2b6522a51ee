import { AgentEventSchema, safeParse } from '@threadline/contracts';
import type { AgentEvent } from '@threadline/contracts';
import { RelayError } from '../errors.js';
import type { StoredEvent } from '../stores/store.js';
import { checkId, checkOpen, storeCall, threadFor, writerFor } from './context.js';
import type { RelayContext } from './context.js';
import { ThreadSubscription } from './subscription.js';
import type { Subscription } from './subscription.js';
import type { SubscribeInput, ToolEventSink } from './types.js';

// Fan-out: subscriptions to a thread's events, and events a host's tools append to a thread.

/** Event types only the relay writes: a tool may not publish them. */
const RELAY_ONLY_TYPES = new Set([
  'RUN_STARTED',
  'RUN_FINISHED',
  'RUN_ERROR',
  'USER_MESSAGE',
  'TOOL_APPROVAL_REQUESTED',
  'TOOL_APPROVAL_RESOLVED',
]);

/** Opens a subscription to a thread's events after `afterSeq`, then live (see {@link Relay.subscribe}). */
export async function subscribe(ctx: RelayContext, input: SubscribeInput): Promise<Subscription> {
  const { store, pubsub, limits, subscriptions, perThread } = ctx;
  checkOpen(ctx);
  checkId(input?.user?.id, 'user.id');
  checkId(input.threadId, 'threadId');
  const afterSeq = input.afterSeq;
  if (typeof afterSeq !== 'number' || !Number.isSafeInteger(afterSeq) || afterSeq < 0) {
    throw new RelayError('invalid_message', 'afterSeq must be a non-negative integer');
  }
  await threadFor(ctx, { id: input.user.id }, input.threadId);
  checkOpen(ctx);
  const onThread = perThread.get(input.threadId) ?? 0;
  if (onThread >= limits.maxSubscribersPerThread) {
    throw new RelayError(
      'too_many_subscribers',
      `thread ${input.threadId} has ${onThread} subscribers, the most allowed`,
    );
  }
  if (subscriptions.size >= limits.maxSubscribers) {
    throw new RelayError(
      'too_many_subscribers',
      `the relay has ${subscriptions.size} subscribers, the most allowed`,
    );
  }
  const maxBufferedEvents = Math.max(
    1,
    Math.min(input.maxBufferedEvents ?? Infinity, limits.maxBufferedEvents),
  );
  perThread.set(input.threadId, onThread + 1);
  const threadId = input.threadId;
  const subscription: ThreadSubscription = new ThreadSubscription({
    store,
    pubsub,
    threadId,
    afterSeq,
    bounds: {
      maxBufferedEvents,
      maxBufferedBytes: limits.maxBufferedBytes,
      replayPageSize: limits.replayPageSize,
    },
    onEnd: () => {
      subscriptions.delete(subscription);
      const n = (perThread.get(threadId) ?? 1) - 1;
      if (n <= 0) perThread.delete(threadId);
      else perThread.set(threadId, n);
    },
  });
  if (!subscription.ended) subscriptions.add(subscription);
  return subscription;
}

/** Appends events a tool emitted to a thread, checked, sequenced and fanned out (see {@link Relay.publish}). */
export async function publish(
  ctx: RelayContext,
  threadId: string,
  events: AgentEvent[],
): Promise<StoredEvent[]> {
  const { store, limits } = ctx;
  checkOpen(ctx);
  checkId(threadId, 'threadId');
  if (!Array.isArray(events)) throw new RelayError('invalid_message', 'events must be an array');
  if (events.length > limits.maxBatchEvents) {
    throw new RelayError(
      'invalid_message',
      `at most ${limits.maxBatchEvents} events may be published at once`,
    );
  }
  const checked: AgentEvent[] = [];
  for (const raw of events) {
    const parsed = safeParse(AgentEventSchema, raw, 'event');
    if (!parsed.ok) throw new RelayError('invalid_message', parsed.error.message, { cause: parsed.error });
    const event = parsed.value;
    if (event.threadId !== threadId)
      throw new RelayError('invalid_message', `event belongs to thread ${event.threadId}, not ${threadId}`);
    if (RELAY_ONLY_TYPES.has(event.type))
      throw new RelayError('invalid_message', `${event.type} events are written by the relay only`);
    checked.push(event);
  }
  if (checked.length === 0) return [];
  const thread = await storeCall('reading the thread', () => store.getThread(threadId));
  if (!thread) throw new RelayError('not_found', `thread ${threadId} does not exist`);
  const writer = writerFor(ctx, threadId);
  const entries = checked.map((event) => writer.add(event, null, false));
  await storeCall('storing events', () => writer.flush());
  return entries.map((entry) => {
    if (!entry.stored) throw new RelayError('internal_error', 'the store did not return a stored event');
    return entry.stored;
  });
}

/** The relay's sink for a tool router's events: each event goes to its own thread through {@link publish}. */
export function toolEventSink(ctx: RelayContext): ToolEventSink {
  return {
    async emit(event: AgentEvent): Promise<void> {
      const threadId = (event as { threadId?: unknown } | null)?.threadId;
      await publish(ctx, threadId as string, [event]);
    },
  };
}
