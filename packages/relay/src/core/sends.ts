import { randomUUID } from 'node:crypto';
import { RegenerateMessageSchema, SendMessageSchema, safeParse } from '@threadline/contracts';
import type { AgentEvent } from '@threadline/contracts';
import { RelayError } from '../errors.js';
import type { GroupCommitter } from './group-commit.js';
import { admit, admitShared, sameSend } from './admission.js';
import { awaitsApproval, holdPaused } from './approvals.js';
import { checkId, checkOpen, describe, storeCall, threadFor, writerFor } from './context.js';
import type { RelayContext } from './context.js';
import { endsRun } from './run-end.js';
import { startRun } from './run-pump.js';
import { storeTerminal } from './terminal.js';
import { titleFromMessage } from './titles.js';
import type { RegenerateInput, SendInput } from './types.js';

// Sends: a user's message (or a regenerate) stored as a run's first event, the run started, or (queue mode)
// the send waiting for the thread's run to end.

/**
 * A regenerate looks for the thread's last user message in at most this many pages (`replayPageSize` events
 * each) back from the end of the log; one further back is not found (`nothing_to_regenerate`).
 */
const REGENERATE_SCAN_PAGES = 16;

/** Stores the user's message and starts its run (see {@link Relay.send}). */
export async function send(ctx: RelayContext, input: SendInput): Promise<{ runId: string }> {
  checkOpen(ctx);
  checkId(input?.user?.id, 'user.id');
  const parsed = safeParse(
    SendMessageSchema,
    { type: 'send', threadId: input.threadId, text: input.text, clientMessageId: input.clientMessageId },
    'send',
  );
  if (!parsed.ok) throw new RelayError('invalid_message', parsed.error.message, { cause: parsed.error });
  const { threadId, text, clientMessageId } = parsed.value;
  const user = { id: input.user.id };
  const thread = await threadFor(ctx, user, threadId);
  return begin(ctx, user, threadId, clientMessageId, text, undefined, thread.title === '');
}

/** Starts a run that answers the thread's last user message again (see {@link Relay.regenerate}). */
export async function regenerate(ctx: RelayContext, input: RegenerateInput): Promise<{ runId: string }> {
  checkOpen(ctx);
  checkId(input?.user?.id, 'user.id');
  const parsed = safeParse(
    RegenerateMessageSchema,
    { type: 'regenerate', threadId: input.threadId, clientMessageId: input.clientMessageId },
    'regenerate',
  );
  if (!parsed.ok) throw new RelayError('invalid_message', parsed.error.message, { cause: parsed.error });
  const { threadId, clientMessageId } = parsed.value;
  const user = { id: input.user.id };
  await threadFor(ctx, user, threadId);
  const turn = await storeCall('reading the thread', () => lastTurn(ctx, threadId));
  if (!turn) {
    throw new RelayError(
      'nothing_to_regenerate',
      `thread ${threadId} has no message to answer again; send one first`,
    );
  }
  return begin(ctx, user, threadId, clientMessageId, turn.text, turn.runId, false);
}

/**
 * The thread's last user message, and the newest run (the one a regenerate replaces), read backwards from
 * the end of the log: at most {@link REGENERATE_SCAN_PAGES} pages.
 */
async function lastTurn(
  ctx: RelayContext,
  threadId: string,
): Promise<{ text: string; runId: string } | null> {
  const { store, limits } = ctx;
  let newest: string | undefined;
  let hi = await store.lastSeq(threadId);
  for (let page = 0; hi > 0 && page < REGENERATE_SCAN_PAGES; page++) {
    const lo = Math.max(0, hi - limits.replayPageSize);
    const events = await store.read(threadId, { afterSeq: lo, limit: hi - lo });
    for (let i = events.length - 1; i >= 0; i--) {
      const json = events[i]!.json;
      if (!json.includes('"USER_MESSAGE"') && !json.includes('"RUN_STARTED"')) continue;
      const event = JSON.parse(json) as AgentEvent;
      if (event.type === 'USER_MESSAGE') return { text: event.text, runId: newest ?? event.runId };
      if (event.type === 'RUN_STARTED') newest ??= event.runId;
    }
    hi = lo;
  }
  return null;
}

/**
 * Stores a run's first event and starts it: a send's USER_MESSAGE, or (with `regenerates`) a RUN_STARTED
 * that replaces that run's answer. One run per thread and idempotency on `clientMessageId` are the store's.
 */
async function begin(
  ctx: RelayContext,
  user: { id: string },
  threadId: string,
  clientMessageId: string,
  text: string,
  regenerates: string | undefined,
  /** The thread has no title yet: the message names it once its run has started. */
  untitled: boolean,
): Promise<{ runId: string }> {
  const { options, pubsub, limits, instanceId, leases, userShares, committer, runs, queues, unterminated } =
    ctx;
  let queued = false;
  let healed = false;
  let deadline = 0;
  for (;;) {
    if (runs.size >= limits.maxActiveRuns) {
      throw new RelayError(
        'agent_unavailable',
        `too many runs in progress (${limits.maxActiveRuns}); try again shortly`,
      );
    }
    let release: (refund: boolean) => void;
    try {
      release = admit(ctx, user.id);
      if (userShares) release = await admitShared(ctx, userShares, user.id, release);
    } catch (error) {
      // A retry of a send whose run is still going (a browser resending after a reconnect) is answered
      // as always, with that run's id: it starts nothing, so no share is needed.
      const same = sameSend(ctx, user.id, threadId, clientMessageId);
      if (same) return { runId: same };
      throw error;
    }
    const runId = `run_${randomUUID()}`;
    const userMessage: AgentEvent =
      regenerates === undefined
        ? {
            type: 'USER_MESSAGE',
            threadId,
            runId,
            ts: Date.now(),
            messageId: `msg_${randomUUID()}`,
            clientMessageId,
            userId: user.id,
            text,
          }
        : { type: 'RUN_STARTED', threadId, runId, ts: Date.now(), regenerates };
    const writer = writerFor(ctx, threadId);
    let result: Awaited<ReturnType<GroupCommitter['start']>>;
    try {
      result = await storeCall('storing the message', () =>
        writer.exclusive(async () => {
          // Through the shared flush: every send of this turn is started in one store transaction.
          const r = await committer.start({
            threadId,
            runId,
            userId: user.id,
            clientMessageId,
            userMessage,
            ...(leases ? { lease: { owner: instanceId, ttlMs: limits.leaseTtlMs } } : {}),
          });
          if (r.status === 'started') pubsub.publish(threadId, [r.userMessage]);
          return r;
        }),
      );
    } catch (error) {
      release(true);
      throw error;
    }
    if (result.status === 'started') {
      startRun(ctx, result.run, text, release, holdPaused, regenerates);
      if (untitled && options.autoTitle !== false) await titleThread(ctx, threadId, text);
      return { runId };
    }
    release(true);
    if (result.status === 'duplicate') return { runId: result.run.runId };
    // The active run is one this relay ended but could not yet record as ended (the store failed): try now,
    // so a thread is never left `run_active` once the store can take the write.
    const stale = unterminated.get(result.activeRun.runId);
    if (stale && !healed) {
      healed = true;
      if (await storeTerminal(ctx, stale, false)) continue;
    }
    if (await awaitsApproval(ctx, result.activeRun)) {
      throw new RelayError(
        'run_awaiting_approval',
        `the run of thread ${threadId} (${result.activeRun.runId}) waits for a decision on a tool call; approve or reject it, or cancel the run`,
      );
    }
    if ((options.whenRunActive ?? 'reject') === 'reject' || ctx.closed || regenerates !== undefined) {
      throw new RelayError(
        'run_active',
        `thread ${threadId} has a run in progress (${result.activeRun.runId}); wait for it to end or cancel it`,
      );
    }
    if (!queued) {
      const waiting = queues.get(threadId)?.size ?? 0;
      if (waiting >= limits.maxQueuedSends) {
        throw new RelayError(
          'queue_full',
          `${waiting} messages already wait for thread ${threadId}; try again later`,
        );
      }
      queued = true;
      deadline = Date.now() + limits.queueTimeoutMs;
    }
    await waitForRunEnd(ctx, threadId, result.activeRun.runId, deadline);
  }
}

/** Resolves when the thread's run ends (heard from any relay sharing the pub/sub) or rejects at the deadline. */
function waitForRunEnd(ctx: RelayContext, threadId: string, runId: string, deadline: number): Promise<void> {
  const { store, pubsub, queues } = ctx;
  return new Promise<void>((resolve, reject) => {
    let set = queues.get(threadId);
    if (!set) queues.set(threadId, (set = new Set()));
    const waiters = set;
    const cleanup = () => {
      clearTimeout(timer);
      unlisten();
      waiters.delete(wake);
      if (waiters.size === 0 && queues.get(threadId) === waiters) queues.delete(threadId);
    };
    const wake = () => {
      cleanup();
      if (ctx.closed) reject(new RelayError('closed', 'the relay is closed'));
      else resolve();
    };
    const timer = setTimeout(
      () => {
        cleanup();
        reject(
          new RelayError(
            'run_active',
            `thread ${threadId} still has a run in progress (${runId}) after waiting`,
          ),
        );
      },
      Math.max(0, deadline - Date.now()),
    );
    const unlisten = pubsub.subscribe(threadId, (events) => {
      for (const e of events) {
        if (endsRun(e)) {
          wake();
          return;
        }
      }
    });
    waiters.add(wake);
    // The run may have ended between startRun's answer and now.
    void store.getRun(runId).then(
      (run) => {
        if (run && run.status !== 'running') wake();
      },
      () => {},
    );
  });
}

/** Stores a title made from the thread's first message, unless it got one meanwhile; failures only logged. */
async function titleThread(ctx: RelayContext, threadId: string, text: string): Promise<void> {
  const { store, logger } = ctx;
  const title = titleFromMessage(text);
  if (title === '') return;
  try {
    await store.renameThread(threadId, title, { onlyIfUntitled: true });
  } catch (error) {
    logger.warn(`[threadline/relay] could not store the title of thread ${threadId}: ${describe(error)}`);
  }
}
