import { createAgUiMapper, createAgUiMessageBuilder } from '@threadline/contracts';
import type { AgentEvent, AgUiEvent, AgUiMessage } from '@threadline/contracts';
import { RelayError } from '../errors.js';
import type { Relay } from '../core/relay.js';
import type { Subscription } from '../core/subscription.js';

// The SSE body of one AG-UI run (see createAgUiHandler in ag-ui.ts): the thread's history as a snapshot, then
// the run's events mapped by the contracts' AG-UI bridge.

const encoder = new TextEncoder();
const frame = (event: AgUiEvent): string => `data: ${JSON.stringify(event)}\n\n`;

/** What {@link runStream} streams: the relay's run, the client's names for it, and the stream's bounds. */
export interface RunStreamInput {
  relay: Relay;
  user: { id: string };
  subscription: Subscription;
  /** The relay's run. */
  runId: string;
  /** The AG-UI run as the client named it. */
  input: { threadId: string; runId: string; parentRunId: string | undefined };
  maxSnapshotMessages: number;
  maxSnapshotBytes: number;
  heartbeatMs: number;
  cancelOnDisconnect: boolean;
  logger: Pick<Console, 'error'>;
}

/**
 * The SSE body of one run: reads the thread from the start, folds everything before the run into the snapshot,
 * then maps the run's events until its terminal one. Pull-based: nothing is read from the relay faster than the
 * client takes it, so a slow client meets the subscription's bound (`slow_consumer`) rather than growing a queue.
 */
export function runStream(s: RunStreamInput): ReadableStream<Uint8Array> {
  const { subscription, runId, input } = s;
  const history = createAgUiMessageBuilder({ maxMessages: s.maxSnapshotMessages });
  const mapper = createAgUiMapper();
  let started = false;
  let ended = false;
  let cancelled = false;
  let heartbeat: ReturnType<typeof setInterval> | undefined;

  const stop = () => {
    ended = true;
    clearInterval(heartbeat);
    subscription.close();
  };

  /** AG-UI events for one stored event of the thread. */
  const onEvent = (event: AgentEvent, out: string[]) => {
    if (!started) {
      if (event.runId !== runId) {
        history.push(event);
        return;
      }
      if (event.type === 'USER_MESSAGE') {
        // Held by the mapper until the run opens, then sent as a user text message after the snapshot.
        mapper.push(event);
        return;
      }
      started = true;
      // The client named the run: AG-UI clients correlate by the runId they sent.
      const opening: AgUiEvent = {
        type: 'RUN_STARTED',
        threadId: input.threadId,
        runId: input.runId,
        ...(input.parentRunId !== undefined ? { parentRunId: input.parentRunId } : {}),
        timestamp: event.ts,
        metadata: { threadlineRunId: runId },
      };
      out.push(frame(opening));
      // The thread before this run. A client keeps the order of the messages it already has, so the new
      // message is not in the snapshot: the snapshot drops the client's copy, and the user text message that
      // follows puts it back after the history, where the log has it.
      out.push(frame({ type: 'MESSAGES_SNAPSHOT', messages: snapshot(), timestamp: event.ts }));
      const opened = mapper.push(
        event.type === 'RUN_STARTED'
          ? event
          : { type: 'RUN_STARTED', threadId: event.threadId, runId, ts: event.ts },
      );
      // The mapper's own RUN_STARTED is not sent (the one above stands for it); the user message is.
      for (const e of opened) if (e.type !== 'RUN_STARTED') out.push(frame(e));
      if (event.type === 'RUN_STARTED') return;
    }
    if (event.runId !== runId) return;
    for (const e of mapper.push(event)) {
      if (e.type === 'RUN_FINISHED') out.push(frame({ ...e, threadId: input.threadId, runId: input.runId }));
      else out.push(frame(e));
      if (e.type === 'RUN_FINISHED' || e.type === 'RUN_ERROR') ended = true;
    }
    if (event.type === 'TOOL_APPROVAL_REQUESTED') {
      // The run waits for a person: AG-UI's interrupt outcome ends this stream. The decision is made through
      // the relay (`approve`); the Threadline run then goes on in the thread's log.
      out.push(
        frame({
          type: 'RUN_FINISHED',
          threadId: input.threadId,
          runId: input.runId,
          outcome: {
            type: 'interrupt',
            interrupts: [
              {
                id: event.toolCallId,
                reason: 'tool_approval',
                toolCallId: event.toolCallId,
                expiresAt: event.expiresAt,
              },
            ],
          },
          timestamp: event.ts,
        }),
      );
      ended = true;
    }
  };

  /** The thread before the run, newest first within the byte bound. */
  const snapshot = (): AgUiMessage[] => {
    const messages = history.messages();
    let bytes = 0;
    let from = messages.length;
    while (from > 0) {
      const size = Buffer.byteLength(JSON.stringify(messages[from - 1]));
      if (bytes + size > s.maxSnapshotBytes) break;
      bytes += size;
      from--;
    }
    return messages.slice(from);
  };

  /** Ends the stream with RUN_ERROR when the subscription fails under it (it never fails the run itself). */
  const streamError = (error: unknown): string[] => {
    const code = error instanceof RelayError ? error.code : 'internal_error';
    const message =
      error instanceof RelayError
        ? `the event stream ended: ${error.message}`
        : 'the event stream ended unexpectedly; the run may still be going';
    if (!(error instanceof RelayError)) s.logger.error('[threadline/relay] ag-ui stream failed:', error);
    return [frame({ type: 'RUN_ERROR', message, code, timestamp: Date.now() })];
  };

  return new ReadableStream<Uint8Array>(
    {
      start(controller) {
        if (s.heartbeatMs > 0) {
          heartbeat = setInterval(() => {
            // Only into an empty queue: a client that reads nothing does not collect heartbeats.
            if (!ended && (controller.desiredSize ?? 0) > 0)
              controller.enqueue(encoder.encode(': keep-alive\n\n'));
          }, s.heartbeatMs);
          heartbeat.unref?.();
        }
      },
      async pull(controller) {
        const out: string[] = [];
        try {
          while (out.length === 0 && !ended) {
            const batch = await subscription.nextBatch();
            if (batch === null) throw new RelayError('closed', 'the subscription was closed');
            for (const stored of batch) {
              onEvent(JSON.parse(stored.json) as AgentEvent, out);
              if (ended) break;
            }
          }
        } catch (error) {
          out.push(...streamError(error));
          ended = true;
        }
        if (cancelled) return;
        if (out.length > 0) controller.enqueue(encoder.encode(out.join('')));
        if (ended) {
          stop();
          controller.close();
        }
      },
      cancel() {
        cancelled = true;
        const unfinished = !ended;
        stop();
        if (unfinished && s.cancelOnDisconnect) {
          s.relay.cancel({ user: s.user, runId }).catch((error: unknown) => {
            if (!(error instanceof RelayError))
              s.logger.error('[threadline/relay] ag-ui cancel failed:', error);
          });
        }
      },
    },
    { highWaterMark: 1 },
  );
}
