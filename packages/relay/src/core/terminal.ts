import { runErrorEvent, describe, writerFor } from './context.js';
import type { PendingTerminal, RelayContext, RunStop } from './context.js';

// Terminal writes: the RUN_ERROR that ends a run the relay stopped, stored once, retried while the store fails.

/**
 * Stores the RUN_ERROR that ends a run. While the store fails (a full disk), it tries again with a backoff
 * (50 ms doubling up to `terminalWriteMaxDelayMs`) for up to `terminalWriteTimeoutMs`, so the run ends as soon
 * as the store can take the write; the run keeps its place in `runs` (and its user's share) meanwhile.
 */
export async function writeRunError(
  ctx: RelayContext,
  threadId: string,
  runId: string,
  stop: RunStop,
): Promise<void> {
  const { ending } = ctx;
  if (ending.has(runId)) return; // already being ended here
  ending.add(runId);
  try {
    await writeRunErrorOnce(ctx, threadId, runId, stop);
  } finally {
    ending.delete(runId);
  }
}

async function writeRunErrorOnce(
  ctx: RelayContext,
  threadId: string,
  runId: string,
  stop: RunStop,
): Promise<void> {
  const { logger, limits, unterminated, retrySleepers } = ctx;
  const pending: PendingTerminal = {
    threadId,
    runId,
    event: runErrorEvent(threadId, runId, stop),
    inFlight: undefined,
    lastError: undefined,
  };
  const giveUpAt = Date.now() + limits.terminalWriteTimeoutMs;
  for (let attempt = 0; ; attempt++) {
    if (await storeTerminal(ctx, pending, attempt === 0)) return;
    if (attempt === 0) unterminated.set(runId, pending);
    const pause = Math.min(50 * 2 ** Math.min(attempt, 20), limits.terminalWriteMaxDelayMs);
    if (ctx.closed || Date.now() + pause > giveUpAt) break;
    await new Promise<void>((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        retrySleepers.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, pause);
      retrySleepers.add(wake);
    });
    if (!unterminated.has(runId)) return; // a send ended it in the meantime
  }
  // The run stays `running` in the store: the next send to its thread ends it (see `send`), else
  // `recover(ctx)` at the next start. Bounded: the oldest such runs are forgotten first.
  logger.error(
    `[threadline/relay] could not store RUN_ERROR for run ${runId}: ${describe(pending.lastError)}`,
  );
  while (unterminated.size > limits.maxActiveRuns) {
    unterminated.delete(unterminated.keys().next().value!);
  }
}

/**
 * One attempt to store a run's RUN_ERROR; true once the run is ended in the store. One attempt at a time
 * per run, and after a failed one the run's status is read first: a write whose outcome was unknown, or
 * another relay, may have ended it already, and a run never gets a second terminal event.
 */
export function storeTerminal(ctx: RelayContext, pending: PendingTerminal, first: boolean): Promise<boolean> {
  const { store, unterminated } = ctx;
  if (pending.inFlight) return pending.inFlight;
  const attempt = (async () => {
    try {
      if (!first) {
        const run = await store.getRun(pending.runId);
        if (run !== null && run.status !== 'running') {
          unterminated.delete(pending.runId);
          return true;
        }
      }
      const writer = writerFor(ctx, pending.threadId);
      writer.add(pending.event, null, false);
      await writer.flush();
      unterminated.delete(pending.runId);
      return true;
    } catch (error) {
      pending.lastError = error;
      return false;
    }
  })();
  pending.inFlight = attempt;
  void attempt.then(() => {
    if (pending.inFlight === attempt) pending.inFlight = undefined;
  });
  return attempt;
}
