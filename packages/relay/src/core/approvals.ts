import { ApproveMessageSchema, safeParse } from '@threadline/contracts';
import type { AgentEvent, RunResume } from '@threadline/contracts';
import { RelayError } from '../errors.js';
import { admitResume } from './admission.js';
import type { RunRecord } from '../stores/store.js';
import { RunStop, checkId, checkOpen, describe, storeCall, threadFor, writerFor } from './context.js';
import type { PausedRun, PausedRunInput, RelayContext } from './context.js';
import { MAX_APPROVAL_TTL_MS } from './settings.js';
import { runEndOf } from './run-end.js';
import { startRun } from './run-pump.js';
import type { ApproveInput } from './types.js';
import { writeRunError } from './terminal.js';

// Tool approvals: runs that wait for a person's decision on a tool call, held by one instance (lease renewed,
// expiry armed), resumed with the decision or ended (approval_expired, cancelled). The log is the truth.

/** Events read from the end of a thread to find a run's pending approval. */
const APPROVAL_TAIL = 256;

/** The run request's `message` on a resume (required by the contract, not used by the agent). */
const RESUME_MESSAGE = 'Continue after the tool approval.';

/** What the end of a thread's log says about a run's approvals. */
interface ApprovalView {
  /** The run's newest TOOL_APPROVAL_REQUESTED, if it is in the tail. */
  requested?: { toolCallId: string; expiresAt: number };
  /** Decisions in the tail, by toolCallId. */
  resolved: Map<string, { approved: boolean; decidedBy: string; reason?: string }>;
  /** The run's terminal event is in the tail. */
  ended: boolean;
  /** The type of the run's newest event in the tail. */
  last?: string;
}

/** Runs `fn` after every decision, expiry or cancel of a paused run of the thread started before it here. */
function withDecisionLock<T>(ctx: RelayContext, threadId: string, fn: () => Promise<T>): Promise<T> {
  const { decisionLocks } = ctx;
  const before = decisionLocks.get(threadId) ?? Promise.resolve();
  const result = before.then(fn);
  const tail = result.then(
    () => {},
    () => {},
  );
  decisionLocks.set(threadId, tail);
  void tail.then(() => {
    if (decisionLocks.get(threadId) === tail) decisionLocks.delete(threadId);
  });
  return result;
}

/**
 * What the end of the thread's log (the newest {@link APPROVAL_TAIL} events) says about a run's approvals.
 * The log is the truth: it survives restarts and every instance reads the same.
 */
async function approvalView(ctx: RelayContext, threadId: string, runId: string): Promise<ApprovalView> {
  const { store } = ctx;
  const last = await store.lastSeq(threadId);
  const tail = await store.read(threadId, {
    afterSeq: Math.max(0, last - APPROVAL_TAIL),
    limit: APPROVAL_TAIL,
  });
  const view: ApprovalView = { resolved: new Map(), ended: false };
  const marker = `"runId":${JSON.stringify(runId)}`;
  for (const stored of tail) {
    if (!stored.json.includes(marker)) continue;
    const event = JSON.parse(stored.json) as AgentEvent;
    if (event.runId !== runId) continue;
    view.last = event.type;
    if (event.type === 'TOOL_APPROVAL_REQUESTED')
      view.requested = { toolCallId: event.toolCallId, expiresAt: Date.parse(event.expiresAt) };
    else if (event.type === 'TOOL_APPROVAL_RESOLVED')
      view.resolved.set(event.toolCallId, {
        approved: event.approved,
        decidedBy: event.decidedBy,
        ...(event.reason !== undefined ? { reason: event.reason } : {}),
      });
    else if (event.type === 'RUN_FINISHED' || event.type === 'RUN_ERROR') view.ended = true;
  }
  return view;
}

/** True when the run waits for a decision on a tool call (held here, or so says the log). */
export async function awaitsApproval(ctx: RelayContext, run: RunRecord): Promise<boolean> {
  const { runs, pausedRuns } = ctx;
  if (pausedRuns.has(run.runId)) return true;
  if (runs.has(run.runId)) return false;
  try {
    const view = await approvalView(ctx, run.threadId, run.runId);
    return (
      !view.ended &&
      view.requested !== undefined &&
      !view.resolved.has(view.requested.toolCallId) &&
      view.last === 'TOOL_APPROVAL_REQUESTED'
    );
  } catch {
    return false;
  }
}

/**
 * A running run in the store whose log ends with a pending approval (or with its decision, the run not yet
 * resumed): held here from now on (resumed when decided). False when it is not paused: the caller ends it.
 */
export async function adoptIfPaused(ctx: RelayContext, run: RunRecord): Promise<boolean> {
  const { instanceId, clustered, pausedRuns, foreignLeases } = ctx;
  if (pausedRuns.has(run.runId)) return true;
  if (ctx.closed) return false;
  const foreign = run.lease !== undefined && run.lease.owner !== instanceId && !clustered;
  let view: ApprovalView;
  try {
    view = await approvalView(ctx, run.threadId, run.runId);
  } catch {
    return false;
  }
  const requested = view.requested;
  if (view.ended || !requested) return false;
  const decision = view.resolved.get(requested.toolCallId);
  if (decision && view.last === 'TOOL_APPROVAL_RESOLVED') {
    if (foreign) foreignLeases.add(run.runId);
    // Decided, but whoever held it stopped before the run went on: it goes on here. (A tool call that had
    // started already does not run twice: its call id is its idempotency key.)
    resumeRun(ctx, run, {
      toolCallId: requested.toolCallId,
      approved: decision.approved,
      ...(decision.reason !== undefined ? { reason: decision.reason } : {}),
    });
    return true;
  }
  if (decision || view.last !== 'TOOL_APPROVAL_REQUESTED') return false;
  if (foreign) foreignLeases.add(run.runId);
  holdPaused(ctx, {
    threadId: run.threadId,
    runId: run.runId,
    userId: run.userId,
    toolCallId: requested.toolCallId,
    expiresAt: requested.expiresAt,
  });
  return true;
}

/**
 * Holds a paused run: its lease is renewed with this instance's runs, it ends at `expiresAt`
 * (approval_expired), and it resumes when its decision shows up on the thread's pub/sub (written here or by
 * another instance).
 */
export function holdPaused(ctx: RelayContext, input: PausedRunInput): void {
  const { pubsub, pausedRuns } = ctx;
  if (pausedRuns.has(input.runId) || ctx.closed) return;
  const entry: PausedRun = { ...input, timer: undefined, unlisten: () => {} };
  const runMarker = `"runId":${JSON.stringify(input.runId)}`;
  const callMarker = `"toolCallId":${JSON.stringify(input.toolCallId)}`;
  entry.unlisten = pubsub.subscribe(input.threadId, (events) => {
    for (const stored of events) {
      if (!stored.json.includes(runMarker)) continue;
      if (runEndOf(stored)?.runId === input.runId) {
        releasePaused(ctx, entry);
        dropResumeShare(ctx, input.runId);
        return;
      }
      if (!stored.json.includes('"TOOL_APPROVAL_RESOLVED"') || !stored.json.includes(callMarker)) continue;
      const event = JSON.parse(stored.json) as AgentEvent;
      if (
        event.type !== 'TOOL_APPROVAL_RESOLVED' ||
        event.runId !== input.runId ||
        event.toolCallId !== input.toolCallId
      )
        continue;
      releasePaused(ctx, entry);
      resumeRun(ctx, entry, {
        toolCallId: event.toolCallId,
        approved: event.approved,
        ...(event.reason !== undefined ? { reason: event.reason } : {}),
      });
      return;
    }
  });
  armExpiry(ctx, entry);
  pausedRuns.set(input.runId, entry);
}

function armExpiry(ctx: RelayContext, entry: PausedRun): void {
  clearTimeout(entry.timer);
  const wait = Math.min(Math.max(0, entry.expiresAt - Date.now()), MAX_APPROVAL_TTL_MS);
  entry.timer = setTimeout(() => void expirePaused(ctx, entry), wait);
  entry.timer.unref?.();
}

/** Gives back the share a decision reserved for a run that will not resume here after all. */
export function dropResumeShare(ctx: RelayContext, runId: string): void {
  ctx.resumeShares.get(runId)?.(true);
  ctx.resumeShares.delete(runId);
}

/** Stops holding a paused run here: its expiry timer and its listener go (the run stays paused in the store). */
export function releasePaused(ctx: RelayContext, entry: PausedRun): void {
  const { pausedRuns } = ctx;
  clearTimeout(entry.timer);
  entry.unlisten();
  if (pausedRuns.get(entry.runId) === entry) pausedRuns.delete(entry.runId);
}

/** The wait is over with no decision: the run ends with RUN_ERROR `approval_expired`. */
async function expirePaused(ctx: RelayContext, entry: PausedRun): Promise<void> {
  const { store, logger, pausedRuns } = ctx;
  try {
    await withDecisionLock(ctx, entry.threadId, async () => {
      if (pausedRuns.get(entry.runId) !== entry) return;
      const view = await approvalView(ctx, entry.threadId, entry.runId);
      // Decided (or ended) just now: the pub/sub listener takes it from here.
      if (view.ended || view.resolved.has(entry.toolCallId)) return;
      releasePaused(ctx, entry);
      await writeRunError(
        ctx,
        entry.threadId,
        entry.runId,
        new RunStop(
          'approval_expired',
          'nobody approved or rejected the tool call in time; send the message again',
        ),
      );
      store.deleteRunState?.(entry.threadId, entry.runId).catch(() => {});
    });
  } catch (error) {
    // The store failed: try again shortly (the run stays paused meanwhile).
    if (pausedRuns.get(entry.runId) === entry && !ctx.closed) {
      logger.warn(`[threadline/relay] could not expire paused run ${entry.runId}: ${describe(error)}`);
      entry.expiresAt = Date.now() + 5_000;
      armExpiry(ctx, entry);
    }
  }
}

/** Cancels a paused run held here: RUN_ERROR `cancelled`, its saved state dropped. */
export async function cancelPaused(ctx: RelayContext, entry: PausedRun): Promise<void> {
  const { store, pausedRuns } = ctx;
  await withDecisionLock(ctx, entry.threadId, async () => {
    if (pausedRuns.get(entry.runId) !== entry) return;
    releasePaused(ctx, entry);
    await writeRunError(ctx, entry.threadId, entry.runId, new RunStop('cancelled', 'the run was cancelled'));
    store.deleteRunState?.(entry.threadId, entry.runId).catch(() => {});
  });
}

/** Sends a decided run back to the agent: same runId, seqs continue, one terminal event at the end. */
function resumeRun(
  ctx: RelayContext,
  run: Pick<RunRecord, 'runId' | 'threadId' | 'userId'>,
  resume: RunResume,
): void {
  const { runs, resumeShares } = ctx;
  if (ctx.closed) return dropResumeShare(ctx, run.runId);
  // The stream that paused may not have let go of the run yet: go on once it has.
  const current = runs.get(run.runId);
  if (current) {
    void current.done.then(() => resumeRun(ctx, run, resume));
    return;
  }
  // The share a decision taken here reserved, else (decided on another instance, or adopted at start) one
  // counted now: the resumed run is one of its user's runs in progress until it ends.
  const release = resumeShares.get(run.runId) ?? admitResume(ctx, run.userId, false);
  resumeShares.delete(run.runId);
  const record: RunRecord = {
    runId: run.runId,
    threadId: run.threadId,
    userId: run.userId,
    clientMessageId: '',
    status: 'running',
    startedAt: Date.now(),
  };
  // The agent continues from its saved state; the message is not used on a resume.
  startRun(ctx, record, RESUME_MESSAGE, release, holdPaused, undefined, resume);
}

/** Decides a tool call that waits for approval (see {@link Relay.approve}). */
export async function approve(ctx: RelayContext, input: ApproveInput): Promise<void> {
  const { store } = ctx;
  checkOpen(ctx);
  checkId(input?.user?.id, 'user.id');
  const parsed = safeParse(
    ApproveMessageSchema,
    {
      type: 'approve',
      threadId: input.threadId,
      runId: input.runId,
      toolCallId: input.toolCallId,
      approved: input.approved,
      ...(input.reason !== undefined ? { reason: input.reason } : {}),
    },
    'approve',
  );
  if (!parsed.ok) throw new RelayError('invalid_message', parsed.error.message, { cause: parsed.error });
  const { threadId, runId, toolCallId, approved, reason } = parsed.value;
  const user = { id: input.user.id };
  await threadFor(ctx, user, threadId);
  const notPending = (why: string) =>
    new RelayError('approval_not_pending', `tool call ${toolCallId} of run ${runId} ${why}`);
  await withDecisionLock(ctx, threadId, async () => {
    const record = await storeCall('reading the run', () => store.getRun(runId));
    if (!record || record.threadId !== threadId) throw notPending('does not wait for approval');
    const view = await storeCall('reading the thread', () => approvalView(ctx, threadId, runId));
    const made = view.resolved.get(toolCallId);
    if (made) {
      // The same decision again (a retried frame) is answered like the first; another one is refused.
      if (made.approved === approved && (made.reason ?? '') === (reason ?? '')) return;
      throw new RelayError(
        'approval_already_decided',
        `tool call ${toolCallId} was already ${made.approved ? 'approved' : 'rejected'}`,
      );
    }
    if (record.status !== 'running' || view.ended) throw notPending('belongs to a run that has ended');
    if (view.requested?.toolCallId !== toolCallId) throw notPending('does not wait for approval');
    if (view.requested.expiresAt <= Date.now()) throw notPending('waited too long; the request expired');
    const event: AgentEvent = {
      type: 'TOOL_APPROVAL_RESOLVED',
      threadId,
      runId,
      ts: Date.now(),
      toolCallId,
      approved,
      decidedBy: user.id,
      ...(reason !== undefined && reason !== '' ? { reason } : {}),
    };
    // A run held here resumes as soon as the decision is stored: its user's share is taken now, before it
    // is (refused with too_many_runs while they have as many runs in progress as allowed).
    const held = ctx.pausedRuns.has(runId);
    if (held) ctx.resumeShares.set(runId, admitResume(ctx, record.userId, true));
    const writer = writerFor(ctx, threadId);
    writer.add(event, null, false);
    // Stored before anything goes on; whoever holds the run hears it on the pub/sub and resumes it.
    try {
      await storeCall('storing the decision', () => writer.flush());
    } catch (error) {
      if (held) dropResumeShare(ctx, runId);
      throw error;
    }
  });
}
