import { RelayError } from '../errors.js';
import { sweepStartWindows } from './admission.js';
import { approve, cancelPaused, dropResumeShare, releasePaused } from './approvals.js';
import { cancel } from './cancel.js';
import { RunStop, createContext } from './context.js';
import type { RelayContext } from './context.js';
import { publish, subscribe, toolEventSink } from './fan-out.js';
import { recheckQuietThreads, recover, renewLeases, sweepLeases } from './leases.js';
import { regenerate, send } from './sends.js';
import {
  createThread,
  deleteThread,
  endSubscriptionsOf,
  getThread,
  listThreads,
  renameThread,
} from './threads.js';
import type { Relay, RelayHealth, RelayOptions } from './types.js';

// The relay's front: createRelay builds the shared context, starts the timers and the cluster's control
// listener, and hands each method to the module that owns it. The work lives in the modules beside this file.

export { DEFAULT_RELAY_LIMITS, DEFAULT_RELAY_TUNING } from './settings.js';
export type { DeprecatedTuningLimits, RelayLimits, RelayTuning } from './settings.js';
export type {
  ApproveInput,
  RegenerateInput,
  Relay,
  RelayClusterOptions,
  RelayHealth,
  RelayOptions,
  RunTokenIssuer,
  SendInput,
  SubscribeInput,
  ToolEventSink,
  UserShares,
} from './types.js';

/**
 * Creates a relay over a store and an agent transport. Throws RelayError `invalid_options` (or
 * `invalid_message` for a bad `limits.approvalTtlMs`) for options it cannot use.
 *
 * @example
 * const store = await openSqliteStore({ path: 'threadline.db' });
 * const relay = createRelay({
 *   store,
 *   agent: httpAgentTransport({ url: 'http://127.0.0.1:4100', credential: secret }),
 *   tokens: createTokenIssuer({ secret: toolSecret, issuer: 'my-api' }),
 *   toolsBaseUrl: 'http://127.0.0.1:3000',
 *   tools: router.toolNames,
 * });
 * await relay.recover();
 * attachWebSocketServer(httpServer, relay, { authenticate, allowedOrigins: ['https://app.example'] });
 */
export function createRelay(options: RelayOptions): Relay {
  const ctx = createContext(options);
  const stopTimers = startTimers(ctx);
  // A cancel or a thread delete sent on another instance reaches this one here.
  const unlistenControl = ctx.pubsub.subscribeControl?.((message) => {
    if (message?.type === 'thread_deleted') return endSubscriptionsOf(ctx, message.threadId);
    if (message?.type !== 'cancel') return;
    const paused = ctx.pausedRuns.get(message.runId);
    if (paused) void cancelPaused(ctx, paused).catch(() => {});
    const run = ctx.runs.get(message.runId);
    if (run && !run.controller.signal.aborted)
      run.controller.abort(new RunStop('cancelled', 'the run was cancelled'));
  });

  async function close(): Promise<void> {
    if (ctx.closed) return;
    ctx.closed = true;
    stopTimers();
    unlistenControl?.();
    // Paused runs stay paused in the store: the next start (or another instance) holds them again.
    for (const paused of [...ctx.pausedRuns.values()]) releasePaused(ctx, paused);
    for (const runId of [...ctx.resumeShares.keys()]) dropResumeShare(ctx, runId);
    for (const wake of [...ctx.retrySleepers]) wake();
    for (const run of ctx.runs.values()) {
      if (!run.controller.signal.aborted)
        run.controller.abort(new RunStop('shutdown', 'the relay shut down'));
    }
    await Promise.all([...ctx.runs.values()].map((r) => r.done));
    for (const [, waiters] of ctx.queues) for (const wake of [...waiters]) wake();
    const error = new RelayError('closed', 'the relay is closed');
    for (const subscription of [...ctx.subscriptions]) subscription.fail(error);
    await Promise.all([...ctx.writers.values()].map((w) => w.flush().catch(() => {})));
  }

  return {
    send: (input) => send(ctx, input),
    regenerate: (input) => regenerate(ctx, input),
    subscribe: (input) => subscribe(ctx, input),
    cancel: (input) => cancel(ctx, input),
    createThread: (input) => createThread(ctx, input),
    listThreads: (input) => listThreads(ctx, input),
    getThread: (input) => getThread(ctx, input),
    renameThread: (input) => renameThread(ctx, input),
    deleteThread: (input) => deleteThread(ctx, input),
    approve: (input) => approve(ctx, input),
    publish: (threadId, events) => publish(ctx, threadId, events),
    toolEvents: toolEventSink(ctx),
    recover: () => recover(ctx),
    close,
    health: () => health(ctx),
    get activeRuns() {
      return ctx.runs.size;
    },
    get subscribers() {
      return ctx.subscriptions.size;
    },
    instanceId: ctx.instanceId,
  };
}

/** Starts the relay's periodic work (start windows, lease renewal and sweep, quiet-thread rechecks); returns its stop. */
function startTimers(ctx: RelayContext): () => void {
  const { limits, leases, sharedPubSub } = ctx;
  const startSweep = sweepStartWindows(ctx);
  const renewTimer = leases ? setInterval(() => void renewLeases(ctx), limits.leaseRenewMs) : undefined;
  renewTimer?.unref?.();
  const sweepTimer =
    leases || sharedPubSub
      ? setInterval(() => {
          if (leases) void sweepLeases(ctx);
          if (sharedPubSub) void recheckQuietThreads(ctx);
        }, limits.leaseSweepMs)
      : undefined;
  sweepTimer?.unref?.();
  return () => {
    clearInterval(startSweep);
    clearInterval(renewTimer);
    clearInterval(sweepTimer);
  };
}

/** What the relay's writes say of its store, and the runs it could not end or that wait for the agent. */
function health(ctx: RelayContext): RelayHealth {
  const { storeHealth } = ctx;
  return {
    store: {
      ...storeHealth,
      ...(storeHealth.lastError ? { lastError: { ...storeHealth.lastError } } : {}),
    },
    unterminatedRuns: ctx.unterminated.size,
    waitingForAgent: ctx.gate.waiting,
  };
}
