import { RelayError } from '../errors.js';
import { cancelPaused } from './approvals.js';
import { RunStop, checkId, checkOpen, storeCall, threadFor } from './context.js';
import type { RelayContext } from './context.js';
import { runEndOf } from './run-end.js';
import { writeRunError } from './terminal.js';

/** Cancels a run here, on the instance that streams it, or in the log (see {@link Relay.cancel}). */
export async function cancel(
  ctx: RelayContext,
  input: { user: { id: string }; runId: string },
): Promise<void> {
  const { store, pubsub, limits, instanceId, leases, runs, pausedRuns } = ctx;
  checkOpen(ctx);
  checkId(input?.user?.id, 'user.id');
  checkId(input.runId, 'runId');
  const local = runs.get(input.runId);
  const record = local ? null : await storeCall('reading the run', () => store.getRun(input.runId));
  const threadId = local?.threadId ?? record?.threadId;
  const notFound = new RelayError('not_found', `run ${input.runId} does not exist or you may not cancel it`);
  if (threadId === undefined) throw notFound;
  try {
    await threadFor(ctx, { id: input.user.id }, threadId);
  } catch (error) {
    if (error instanceof RelayError && error.code === 'not_found') throw notFound;
    throw error;
  }
  if (local) {
    if (!local.controller.signal.aborted)
      local.controller.abort(new RunStop('cancelled', 'the run was cancelled'));
    await local.done;
    return;
  }
  const paused = pausedRuns.get(input.runId);
  if (paused) {
    await cancelPaused(ctx, paused);
    return;
  }
  if (record?.status !== 'running') return;
  const owner = record.lease?.owner;
  if (leases && pubsub.publishControl && owner !== undefined && owner !== instanceId) {
    // Another instance streams it: ask it to stop (it aborts the agent's call and stores the RUN_ERROR), and
    // wait for the end. If that instance is gone, the lease sweep ends the run with owner_lost meanwhile.
    pubsub.publishControl({ type: 'cancel', runId: input.runId });
    const bound = limits.leaseTtlMs + limits.leaseSweepMs + limits.leaseRenewMs;
    if (!(await untilRunEnds(ctx, threadId, input.runId, bound))) {
      checkOpen(ctx);
      throw new RelayError(
        'agent_unavailable',
        `the relay instance streaming run ${input.runId} did not stop it within ${bound} ms; try again`,
      );
    }
    return;
  }
  // Nobody to ask (no lease, or one this instance's earlier process held, or no control channel): end it in
  // the log. A live owner finds the run ended at its next lease renewal and stops its agent.
  await writeRunError(ctx, threadId, input.runId, new RunStop('cancelled', 'the run was cancelled'));
}

/**
 * Resolves true once the run has ended (its terminal event heard on the pub/sub, or its record read from the
 * store, at least every second), false after `timeoutMs` or when the relay closes.
 */
function untilRunEnds(
  ctx: RelayContext,
  threadId: string,
  runId: string,
  timeoutMs: number,
): Promise<boolean> {
  const { store, pubsub, retrySleepers } = ctx;
  return new Promise<boolean>((resolve) => {
    let done = false;
    const finish = (ended: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      clearInterval(poll);
      unlisten();
      retrySleepers.delete(onClose);
      resolve(ended);
    };
    const onClose = () => finish(false);
    const unlisten = pubsub.subscribe(threadId, (events) => {
      for (const e of events) {
        if (runEndOf(e)?.runId === runId) finish(true);
      }
    });
    const check = () => {
      store.getRun(runId).then(
        (run) => {
          if (!run || run.status !== 'running') finish(true);
        },
        () => {},
      );
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    const poll = setInterval(check, Math.min(1_000, timeoutMs));
    retrySleepers.add(onClose);
    check();
  });
}
