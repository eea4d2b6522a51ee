import type { AgentEvent, RunRequest, RunResume } from '@threadline/contracts';
import { AgentEventSchema, ContractError, RunRequestSchema, safeParse } from '@threadline/contracts';
import { AgentTransportError } from '../agent/agent-transport.js';
import { isPlainChunk } from '../agent/chunk-check.js';
import type { ChunkIdCache } from '../agent/chunk-check.js';
import { RelayError } from '../errors.js';
import type { RunRecord } from '../stores/store.js';
import { RunStop, describe, writerFor } from './context.js';
import type { ActiveRun, PausedRunInput, RelayContext } from './context.js';
import { writeRunError } from './terminal.js';

// The run pump: a run's agent stream, read under the idle watchdog and the agent gate, checked and written to
// its thread's log, ended with exactly one terminal event.

/** Starts streaming a run whose first event is stored; `release` gives its user's share back when it ends. */
export function startRun(
  ctx: RelayContext,
  record: RunRecord,
  message: string,
  release: (refund: boolean) => void,
  /** Holds the run when the agent ends its stream waiting for a tool approval. */
  onPause: (ctx: RelayContext, paused: PausedRunInput) => void,
  regenerates?: string,
  resume?: RunResume,
): void {
  const { runs, pausedRuns, foreignLeases } = ctx;
  const controller = new AbortController();
  const run: ActiveRun = {
    runId: record.runId,
    threadId: record.threadId,
    userId: record.userId,
    clientMessageId: record.clientMessageId,
    ...(regenerates === undefined ? {} : { regenerates }),
    controller,
    done: Promise.resolve(),
    lost: false,
    onStoreError(error: unknown) {
      if (!controller.signal.aborted) {
        controller.abort(
          new RunStop(
            'store_unavailable',
            `the store could not save the run's events: ${describe(error)}; send the message again later`,
          ),
        );
      }
    },
  };
  runs.set(run.runId, run);
  run.done = pump(ctx, run, message, onPause, resume).finally(() => {
    runs.delete(run.runId);
    if (!pausedRuns.has(run.runId)) foreignLeases.delete(run.runId);
    release(false);
  });
}

async function pump(
  ctx: RelayContext,
  run: ActiveRun,
  message: string,
  onPause: (ctx: RelayContext, paused: PausedRunInput) => void,
  resume?: RunResume,
): Promise<void> {
  const { agent, limits, gate } = ctx;
  const { threadId, runId, controller } = run;
  const signal = controller.signal;
  const writer = writerFor(ctx, threadId);
  // Batches of events from a transport with runBatches (one async step per batch), else single events.
  let iterator: AsyncIterator<AgentEvent | readonly AgentEvent[]> | undefined;
  const batched = agent.runBatches !== undefined;
  let idleTimer: ReturnType<typeof setTimeout> | undefined;
  let failure: RunStop | undefined;
  let onAbort: (() => void) | undefined;
  /** The run holds a place at the agent service (it was not refused as at capacity). */
  let atAgent = false;
  /** The agent asked for a tool approval and ended its stream: the run waits for a person. */
  let pausedOn: { toolCallId: string; expiresAt: number } | undefined;
  let paused = false;
  try {
    const request = await buildRequest(ctx, run, message, resume);
    const open = () =>
      (agent.runBatches ? agent.runBatches(request, { signal }) : agent.run(request, { signal }))[
        Symbol.asyncIterator
      ]();
    // Every await of the loop can be cut short by the abort signal. Not Promise.race against one shared
    // promise: each race leaves a reaction on it until the run ends (one per event: a leak and GC churn).
    let interrupt: ((reason: unknown) => void) | undefined;
    onAbort = () => interrupt?.(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    const interruptible = <T>(promise: Promise<T>): Promise<T> => {
      if (signal.aborted) {
        promise.catch(() => {});
        return Promise.reject(signal.reason as Error);
      }
      return new Promise<T>((resolve, reject) => {
        interrupt = reject;
        promise.then(resolve, reject);
      });
    };
    let last = Date.now();
    const idle = limits.agentIdleTimeoutMs;
    const watch = () => {
      const quiet = Date.now() - last;
      if (quiet >= idle) {
        controller.abort(new RunStop('agent_idle_timeout', `the agent sent nothing for ${idle} ms`));
      } else idleTimer = setTimeout(watch, idle - quiet);
    };
    // Until the agent takes the run: while it answers "at capacity", the run waits its turn at the gate
    // (bounded; the idle bound does not run meanwhile) and tries again. Nothing is stored before that.
    let first: IteratorResult<AgentEvent | readonly AgentEvent[]> | undefined;
    let waitedSince = 0;
    let retry = false;
    while (first === undefined) {
      const granted = retry || gate.mustWait;
      if (granted) {
        if (waitedSince === 0) waitedSince = Date.now();
        await interruptible(gate.wait(run.userId, waitedSince, signal, retry));
      }
      last = Date.now();
      idleTimer = setTimeout(watch, idle);
      gate.trying(run.userId, granted);
      atAgent = true;
      try {
        iterator = open();
        first = await interruptible(iterator.next());
      } catch (error) {
        const busy =
          !signal.aborted && error instanceof AgentTransportError && error.runErrorCode === 'agent_busy';
        atAgent = !busy;
        gate.answered(run.userId, granted, !busy, busy ? error.retryAfterMs : undefined);
        if (!busy) throw error;
        clearTimeout(idleTimer);
        retry = true;
        continue;
      }
      gate.answered(run.userId, granted, true);
    }
    // A regenerate's RUN_STARTED is stored already; the agent's own, if it sends one first, is dropped.
    // A resumed run started earlier: its log has its RUN_STARTED already.
    let started = run.regenerates !== undefined || resume !== undefined;
    let skipStart = run.regenerates !== undefined;
    const seen: ChunkIdCache = {};
    for (let next: typeof first | undefined = first; ; next = undefined) {
      next ??= await interruptible(iterator!.next());
      if (next.done) {
        if (pausedOn) {
          // The agent saved the run and ended its stream after asking: the run waits, with no terminal event.
          await interruptible(writer.flush());
          paused = true;
          break;
        }
        failure = new RunStop('agent_stream_ended', 'the agent stream ended before the run finished');
        break;
      }
      last = Date.now();
      const value = next.value;
      if (batched && !Array.isArray(value)) {
        throw new AgentTransportError(
          'agent_stream_invalid',
          'the agent transport yielded a batch that is not an array',
        );
      }
      const count = batched ? (value as readonly AgentEvent[]).length : 1;
      for (let i = 0; i < count; i++) {
        if (signal.aborted) throw signal.reason;
        const raw = batched ? (value as readonly AgentEvent[])[i] : value;
        const event = checkAgentEvent(raw, threadId, runId, seen);
        if (skipStart) {
          skipStart = false;
          if (event.type === 'RUN_STARTED') continue;
        }
        if (event.type === 'RUN_STARTED') {
          if (started)
            throw new AgentTransportError('agent_stream_invalid', 'the agent sent RUN_STARTED twice');
          started = true;
          // Written with the run's next event (the agent's fetches back to this API are not held up by it).
          writer.hold(event, run);
          continue;
        }
        if (!started) {
          // The log always opens a run with RUN_STARTED, even when the agent does not send one.
          writer.add({ type: 'RUN_STARTED', threadId, runId, ts: event.ts }, run, false);
          started = true;
        }
        if (event.type === 'TOOL_APPROVAL_RESOLVED')
          throw new AgentTransportError('agent_stream_invalid', 'only the relay writes approval decisions');
        if (event.type === 'TOOL_APPROVAL_REQUESTED') {
          // The relay's bound on the wait is the one that counts.
          const expiresAt = Date.now() + limits.approvalTtlMs;
          writer.add({ ...event, expiresAt: new Date(expiresAt).toISOString() }, run, false);
          pausedOn = { toolCallId: event.toolCallId, expiresAt };
          continue;
        }
        pausedOn = undefined;
        if (event.type === 'RUN_FINISHED' || event.type === 'RUN_ERROR') {
          writer.add(event, run, false);
          // Not interruptible: once the agent's terminal event is on its way to the store, a cancel (or a
          // shutdown) arriving now must not add a second one. Only a failed write leads to a RUN_ERROR.
          await writer.flush();
          return;
        }
        writer.add(event, run, true);
        // Backpressure: a full batch is written before the agent stream is read further.
        if (writer.buffered >= limits.maxBatchEvents) await interruptible(writer.flush());
      }
    }
  } catch (error) {
    failure = toStop(error, signal);
  } finally {
    clearTimeout(idleTimer);
    if (onAbort) signal.removeEventListener('abort', onAbort);
    // Its place at the agent goes to the next run waiting for one.
    if (atAgent) gate.released(run.userId);
  }
  if (paused && pausedOn && !signal.aborted && !run.lost) {
    onPause(ctx, {
      threadId,
      runId,
      userId: run.userId,
      toolCallId: pausedOn.toolCallId,
      expiresAt: pausedOn.expiresAt,
    });
    return;
  }
  // The run failed: stop the agent and store the RUN_ERROR that ends it.
  if (!signal.aborted) controller.abort(failure);
  if (iterator?.return) {
    Promise.resolve()
      .then(() => iterator.return!())
      .catch(() => {});
  }
  if (failure && failure.code !== 'agent_unreachable' && failure.code !== 'agent_busy' && agent.cancel) {
    agent.cancel(runId).catch(() => {});
  }
  // Ended elsewhere or taken over by another instance: its log is not ours to write any more.
  if (run.lost) return;
  await writeRunError(
    ctx,
    threadId,
    runId,
    failure ?? new RunStop('internal_error', 'the run stopped unexpectedly'),
  );
}

/** The run request for the agent, with a fresh act-as token. */
async function buildRequest(
  ctx: RelayContext,
  run: ActiveRun,
  message: string,
  resume?: RunResume,
): Promise<RunRequest> {
  const { options } = ctx;
  let token: string;
  try {
    token = await options.tokens.issue({
      userId: run.userId,
      threadId: run.threadId,
      runId: run.runId,
      tools: [...options.tools],
    });
  } catch (cause) {
    throw new RunStop('internal_error', `could not mint the run's act-as token: ${describe(cause)}`);
  }
  const request = safeParse(
    RunRequestSchema,
    {
      threadId: run.threadId,
      runId: run.runId,
      user: { id: run.userId },
      text: message,
      ...(run.regenerates === undefined ? {} : { regenerates: run.regenerates }),
      tools: { baseUrl: options.toolsBaseUrl, token },
      ...(resume ? { resume } : {}),
    },
    'run request',
  );
  if (!request.ok)
    throw new RunStop('internal_error', `could not build the run request: ${request.error.message}`);
  return request.value;
}

/** Validates an event from the agent: contract shape, this run's thread and run, and a type an agent may send. */
function checkAgentEvent(value: unknown, threadId: string, runId: string, seen: ChunkIdCache): AgentEvent {
  if (isPlainChunk(value, threadId, runId, seen)) return value;
  const parsed = safeParse(AgentEventSchema, value, 'agent event');
  if (!parsed.ok)
    throw new AgentTransportError('agent_stream_invalid', `the agent sent an ${parsed.error.message}`, {
      cause: parsed.error,
    });
  const event = parsed.value;
  if (event.threadId !== threadId || event.runId !== runId) {
    throw new AgentTransportError(
      'agent_stream_invalid',
      `the agent sent an event of another thread or run (${event.threadId}/${event.runId})`,
    );
  }
  if (event.type === 'USER_MESSAGE')
    throw new AgentTransportError('agent_stream_invalid', 'the agent may not send USER_MESSAGE events');
  return event;
}

/** The RunStop that says why a run failed, from what its pump caught. */
function toStop(error: unknown, signal: AbortSignal): RunStop {
  if (error instanceof RunStop) return error;
  if (signal.aborted && signal.reason instanceof RunStop) return signal.reason;
  if (error instanceof AgentTransportError) return new RunStop(error.runErrorCode, error.message);
  if (error instanceof ContractError)
    return new RunStop('agent_stream_invalid', `the agent sent an ${error.message}`);
  if (error instanceof RelayError && error.code === 'store_error')
    return new RunStop('store_unavailable', error.message);
  return new RunStop('internal_error', `the agent failed: ${describe(error)}`);
}
