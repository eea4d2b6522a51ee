import type { RunRecord } from '../stores/store.js';
import { RunStop, checkOpen, describe, runErrorEvent, storeCall, writerFor } from './context.js';
import type { RelayContext } from './context.js';
import { adoptIfPaused, releasePaused } from './approvals.js';
import type { ThreadSubscription } from './subscription.js';
import { storeTerminal, writeRunError } from './terminal.js';

// Leases and recovery: this instance renews the leases of the runs it holds, claims and ends the runs whose
// owner is gone, and at start ends (or holds again) the runs a previous process left.

/** Runs one lease sweep or recovery pass claims per store call. */
const SWEEP_BATCH = 100;

function leaseFailed(ctx: RelayContext, which: 'renew' | 'sweep', error: unknown): void {
  const { logger, limits } = ctx;
  if (ctx.leaseLoops.trouble[which] || ctx.closed) return;
  ctx.leaseLoops.trouble[which] = true;
  logger.warn(
    `[threadline/relay] could not ${which === 'renew' ? 'renew the leases of this instance’s runs' : 'look for runs whose owner is gone'}: ${describe(error)}; trying again every ${which === 'renew' ? limits.leaseRenewMs : limits.leaseSweepMs} ms`,
  );
}

/**
 * Renews, in one store call, the leases of every run this instance streams or is ending. A run the store no
 * longer has as ours ended elsewhere or was taken over (this instance was cut off longer than the lease):
 * it is stopped here without writing anything more to it.
 */
export async function renewLeases(ctx: RelayContext): Promise<void> {
  const { store, limits, instanceId } = ctx;
  const state = ctx.leaseLoops;
  if (state.renewing || ctx.closed) return;
  const ids = [...new Set([...ctx.runs.keys(), ...ctx.ending, ...ctx.pausedRuns.keys()])];
  if (ids.length === 0) return;
  state.renewing = true;
  try {
    const held = new Set(await store.renewLeases!(instanceId, ids, limits.leaseTtlMs));
    state.trouble.renew = false;
    for (const runId of ids) if (!held.has(runId)) lostRun(ctx, runId);
  } catch (error) {
    leaseFailed(ctx, 'renew', error);
  } finally {
    state.renewing = false;
  }
}

function lostRun(ctx: RelayContext, runId: string): void {
  const { clustered, runs, unterminated, pausedRuns, foreignLeases } = ctx;
  if (!clustered && foreignLeases.has(runId)) return;
  const run = runs.get(runId);
  if (run) {
    run.lost = true;
    if (!run.controller.signal.aborted)
      run.controller.abort(
        new RunStop('owner_lost', 'the run ended elsewhere or another relay instance took it over'),
      );
  }
  // A RUN_ERROR still being retried: the store has the run ended or someone else's now.
  unterminated.delete(runId);
  // A paused run another instance took over waits there now (alone, nobody else can hold it: keep it).
  const paused = pausedRuns.get(runId);
  if (paused && clustered) releasePaused(ctx, paused);
}

/** Claims the runs whose lease expired (their instance is gone) and ends each with RUN_ERROR `owner_lost`. */
export async function sweepLeases(ctx: RelayContext): Promise<void> {
  const { store, limits, instanceId } = ctx;
  const state = ctx.leaseLoops;
  if (state.sweeping || ctx.closed) return;
  state.sweeping = true;
  try {
    for (;;) {
      const claimed = await store.claimRuns!({
        owner: instanceId,
        ttlMs: limits.leaseTtlMs,
        limit: SWEEP_BATCH,
      });
      state.trouble.sweep = false;
      for (const run of claimed)
        takeOver(
          ctx,
          run,
          new RunStop('owner_lost', 'the relay instance running this run stopped; send the message again'),
        );
      if (claimed.length < SWEEP_BATCH || ctx.closed) break;
    }
  } catch (error) {
    leaseFailed(ctx, 'sweep', error);
  } finally {
    state.sweeping = false;
  }
}

/**
 * With a shared pub/sub, an instance that dies between storing events and publishing them leaves the
 * subscribers elsewhere without them until the thread's next event. So a subscription that has heard
 * nothing for `leaseTtlMs` while a run of its thread may be going on gets the thread's newest seq from the
 * store (one read per thread, at most every `leaseTtlMs`, at most 256 threads per sweep) and reads what it
 * missed.
 */
export async function recheckQuietThreads(ctx: RelayContext): Promise<void> {
  const { store, limits, subscriptions } = ctx;
  const state = ctx.leaseLoops;
  if (state.rechecking || ctx.closed) return;
  state.rechecking = true;
  try {
    const now = Date.now();
    const quiet = new Map<string, ThreadSubscription[]>();
    for (const sub of subscriptions) {
      const since = sub.quietMidRunSince;
      if (since === null || now - since < limits.leaseTtlMs) continue;
      const list = quiet.get(sub.threadId);
      if (list) list.push(sub);
      else if (quiet.size < 256) quiet.set(sub.threadId, [sub]);
    }
    for (const [threadId, subs] of quiet) {
      if (ctx.closed) return;
      let last: number;
      try {
        last = await store.lastSeq(threadId);
      } catch {
        continue; // the store is down: the subscriptions find out on their own reads
      }
      for (const sub of subs) sub.recheck(last);
    }
  } finally {
    state.rechecking = false;
  }
}

/** A run this instance just claimed: ends it, unless it is one of ours still going (the claim renewed it). */
function takeOver(ctx: RelayContext, run: RunRecord, stop: RunStop): Promise<void> {
  const { runs, unterminated, ending, foreignLeases } = ctx;
  foreignLeases.delete(run.runId); // the claim made the lease this instance's
  if (runs.has(run.runId) || ending.has(run.runId)) return Promise.resolve();
  const pending = unterminated.get(run.runId);
  if (pending) return storeTerminal(ctx, pending, false).then(() => {});
  // A run waiting for a tool approval is not lost with its instance: this one holds it from now on.
  return adoptIfPaused(ctx, run).then((adopted) =>
    adopted ? undefined : writeRunError(ctx, run.threadId, run.runId, stop),
  );
}

/** Ends (or holds again, when paused) the runs a previous process left; see {@link Relay.recover}. */
export async function recover(ctx: RelayContext): Promise<number> {
  const { store, leases, clustered } = ctx;
  checkOpen(ctx);
  if (clustered && leases) return recoverInCluster(ctx);
  const running = await storeCall('listing running runs', () => store.listRunningRuns());
  const stop = new RunStop(
    'relay_restarted',
    'the relay restarted while this run was in progress; send the message again',
  );
  let count = 0;
  for (const run of running) if (await endStaleRun(ctx, run, stop)) count++;
  return count;
}

/** Stores the RUN_ERROR of a run a dead process left; false when it is (being ended) here already. */
async function endStaleRun(ctx: RelayContext, run: RunRecord, stop: RunStop): Promise<boolean> {
  const { runs, ending } = ctx;
  if (runs.has(run.runId) || ending.has(run.runId)) return false;
  // A run waiting for a tool approval survives the restart: it is held here and waits on.
  if (await adoptIfPaused(ctx, run)) return false;
  ending.add(run.runId);
  try {
    const event = runErrorEvent(run.threadId, run.runId, stop);
    const writer = writerFor(ctx, run.threadId);
    writer.add(event, null, false);
    await storeCall('failing a stale run', () => writer.flush());
    return true;
  } finally {
    ending.delete(run.runId);
  }
}

/**
 * recover(ctx) among other instances: claims (atomically, so two instances starting together never end a run
 * twice) first the runs whose lease expired, ended with owner_lost, then the runs without a lease or with
 * this instance's id, ended with relay_restarted. Runs other live instances hold are left alone.
 */
async function recoverInCluster(ctx: RelayContext): Promise<number> {
  const { store, limits, instanceId } = ctx;
  let count = 0;
  const passes: [boolean, RunStop][] = [
    [false, new RunStop('owner_lost', 'the relay instance running this run stopped; send the message again')],
    [
      true,
      new RunStop(
        'relay_restarted',
        'the relay restarted while this run was in progress; send the message again',
      ),
    ],
  ];
  for (const [orphans, stop] of passes) {
    for (;;) {
      const claimed = await storeCall('claiming runs left running', () =>
        store.claimRuns!({ owner: instanceId, ttlMs: limits.leaseTtlMs, limit: SWEEP_BATCH, orphans }),
      );
      for (const run of claimed) if (await endStaleRun(ctx, run, stop)) count++;
      if (claimed.length < SWEEP_BATCH) break;
    }
  }
  return count;
}
