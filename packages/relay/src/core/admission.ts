import { RelayError } from '../errors.js';
import { describe } from './context.js';
import type { RelayContext } from './context.js';
import type { UserShares } from './types.js';

// Admission: a user's share of runs (at once, and started per window), in this process and, with
// `cluster.userShares`, across instances.

/**
 * Admits one run start for the user against their shares (runs at once, starts per window) and reserves it:
 * the returned function gives the reservation back (`refund`: the start did not happen, so it does not count
 * against the window either). Throws `too_many_runs` or `rate_limited`.
 */
export function admit(ctx: RelayContext, userId: string): (refund: boolean) => void {
  const { limits, userRuns, userStarts } = ctx;
  const inProgress = userRuns.get(userId) ?? 0;
  if (inProgress >= limits.maxRunsPerUser) {
    throw new RelayError(
      'too_many_runs',
      `you have ${inProgress} runs in progress, the most allowed at once; wait for one to end or cancel one`,
    );
  }
  const now = Date.now();
  let starts = userStarts.get(userId);
  if (starts) {
    const since = now - limits.runStartWindowMs;
    let expired = 0;
    while (expired < starts.length && starts[expired]! <= since) expired++;
    if (expired > 0) starts.splice(0, expired);
  } else userStarts.set(userId, (starts = []));
  if (starts.length >= limits.maxRunStartsPerUser) {
    const retryAfterMs = Math.max(1, starts[0]! + limits.runStartWindowMs - now);
    throw new RelayError(
      'rate_limited',
      `you started ${starts.length} runs in the last ${Math.round(limits.runStartWindowMs / 1000)} s, the most allowed; try again in ${Math.ceil(retryAfterMs / 1000)} s`,
      { retryAfterMs },
    );
  }
  const stamp = now;
  starts.push(stamp);
  const owned = starts;
  userRuns.set(userId, inProgress + 1);
  let released = false;
  return (refund) => {
    if (released) return;
    released = true;
    const n = (userRuns.get(userId) ?? 1) - 1;
    if (n <= 0) userRuns.delete(userId);
    else userRuns.set(userId, n);
    if (refund) {
      const i = owned.lastIndexOf(stamp);
      if (i !== -1) owned.splice(i, 1);
      if (owned.length === 0 && userStarts.get(userId) === owned) userStarts.delete(userId);
    }
  };
}

/**
 * Admits the resume of a paused run (after a decision on its tool call) for the run's user: it counts in their
 * runs in progress here like any run, but it is not a new start (the start window is not charged). With
 * `check` false it only counts: a decision taken on another instance is stored already and must go on. Throws
 * `too_many_runs` (the user's share) or `agent_unavailable` (`maxActiveRuns`) when checking.
 */
export function admitResume(ctx: RelayContext, userId: string, check: boolean): (refund: boolean) => void {
  const { limits, userRuns, runs } = ctx;
  const inProgress = userRuns.get(userId) ?? 0;
  if (check && inProgress >= limits.maxRunsPerUser) {
    throw new RelayError(
      'too_many_runs',
      `you have ${inProgress} runs in progress, the most allowed at once; wait for one to end, then decide again`,
    );
  }
  if (check && runs.size + ctx.resumeShares.size >= limits.maxActiveRuns) {
    throw new RelayError(
      'agent_unavailable',
      `too many runs in progress (${limits.maxActiveRuns}); decide again shortly`,
    );
  }
  userRuns.set(userId, inProgress + 1);
  let released = false;
  return () => {
    if (released) return;
    released = true;
    const n = (userRuns.get(userId) ?? 1) - 1;
    if (n <= 0) userRuns.delete(userId);
    else userRuns.set(userId, n);
  };
}

/**
 * Admits one run start for the user against the shares every instance counts together, on top of this
 * instance's (`local`, already taken; given back here when refused). Returns the release of both. A failing
 * `userShares` is logged and admits: this instance's own shares still hold.
 */
export async function admitShared(
  ctx: RelayContext,
  shares: UserShares,
  userId: string,
  local: (refund: boolean) => void,
): Promise<(refund: boolean) => void> {
  const { logger, limits } = ctx;
  const runsKey = `runs:${userId}`;
  const startsKey = `starts:${userId}`;
  let held = false;
  let token: string | undefined;
  try {
    if (!(await shares.acquire(runsKey, limits.maxRunsPerUser))) {
      throw new RelayError(
        'too_many_runs',
        `you have ${limits.maxRunsPerUser} runs in progress, the most allowed at once; wait for one to end or cancel one`,
      );
    }
    held = true;
    const start = await shares.takeStart(startsKey, limits.maxRunStartsPerUser, limits.runStartWindowMs);
    if ('retryAfterMs' in start) {
      const retryAfterMs = Math.max(1, Math.ceil(start.retryAfterMs));
      throw new RelayError(
        'rate_limited',
        `you started ${limits.maxRunStartsPerUser} runs in the last ${Math.round(limits.runStartWindowMs / 1000)} s, the most allowed; try again in ${Math.ceil(retryAfterMs / 1000)} s`,
        { retryAfterMs },
      );
    }
    token = start.token;
  } catch (error) {
    if (error instanceof RelayError) {
      local(true);
      if (held) void shares.release(runsKey).catch(() => {});
      throw error;
    }
    logger.warn(
      `[threadline/relay] userShares failed (${describe(error)}); admitting on this instance's shares`,
    );
    if (!held) return local;
  }
  let released = false;
  return (refund) => {
    if (released) return;
    released = true;
    local(refund);
    if (held) void shares.release(runsKey).catch(() => {});
    if (refund && token !== undefined) void shares.refundStart(startsKey, token).catch(() => {});
  };
}

/** The id of a run in progress here that this very send (user, thread, clientMessageId) started. */
export function sameSend(
  ctx: RelayContext,
  userId: string,
  threadId: string,
  clientMessageId: string,
): string | undefined {
  const { runs } = ctx;
  for (const run of runs.values()) {
    if (run.threadId === threadId && run.clientMessageId === clientMessageId && run.userId === userId)
      return run.runId;
  }
  return undefined;
}

/**
 * Forgets users whose starts left the window, so `userStarts` holds only users active in the last window.
 * Returns the timer (cleared on close).
 */
export function sweepStartWindows(ctx: RelayContext): ReturnType<typeof setInterval> {
  const { limits, userStarts } = ctx;
  const timer = setInterval(() => {
    const since = Date.now() - limits.runStartWindowMs;
    for (const [userId, starts] of userStarts)
      if (starts[starts.length - 1]! <= since) userStarts.delete(userId);
  }, limits.runStartWindowMs);
  timer.unref?.();
  return timer;
}
