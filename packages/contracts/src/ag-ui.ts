import type { AgentEvent } from './events.js';

/**
 * AG-UI event objects as produced by the bridge (the subset of AG-UI's event types Threadline maps to).
 * Field names follow the AG-UI protocol; `timestamp` carries Threadline's `ts`.
 */
export type AgUiEvent =
  | { type: 'RUN_STARTED'; threadId: string; runId: string; parentRunId?: string; timestamp: number }
  | { type: 'TEXT_MESSAGE_START'; messageId: string; role: 'assistant'; timestamp: number }
  | { type: 'TEXT_MESSAGE_CONTENT'; messageId: string; delta: string; timestamp: number }
  | { type: 'TEXT_MESSAGE_END'; messageId: string; timestamp: number }
  | { type: 'TOOL_CALL_START'; toolCallId: string; toolCallName: string; timestamp: number }
  | { type: 'TOOL_CALL_END'; toolCallId: string; timestamp: number }
  | {
      type: 'TOOL_CALL_RESULT';
      messageId: string;
      toolCallId: string;
      content: string;
      role: 'tool';
      timestamp: number;
    }
  | { type: 'CUSTOM'; name: string; value: unknown; timestamp: number }
  | { type: 'RUN_ERROR'; message: string; code?: string; timestamp: number }
  | { type: 'RUN_FINISHED'; threadId: string; runId: string; result?: unknown; timestamp: number };

/**
 * A stateful mapper from Threadline events to AG-UI events. It keeps AG-UI's rules: a run starts with
 * RUN_STARTED; TEXT_MESSAGE_START/END and TOOL_CALL_START/END pair up; an open message is closed before a
 * tool call and before the run ends; nothing of a run follows its RUN_ERROR or RUN_FINISHED. Events that
 * AG-UI cannot express in order (a USER_MESSAGE, which precedes its run; events outside a run) are dropped.
 * STATE_CHANGED becomes a CUSTOM event named `threadline.state_changed`. HISTORY_WINDOWED (a UI hint about the
 * model's view) is dropped.
 */
export interface AgUiMapper {
  /** Maps one event; returns zero or more AG-UI events. */
  push(event: AgentEvent): AgUiEvent[];
}

/** Creates an {@link AgUiMapper}. */
export function createAgUiMapper(): AgUiMapper {
  let runId: string | null = null;
  let openMessage: string | null = null;
  const closeMessage = (ts: number, out: AgUiEvent[]) => {
    if (openMessage !== null) {
      out.push({ type: 'TEXT_MESSAGE_END', messageId: openMessage, timestamp: ts });
      openMessage = null;
    }
  };
  return {
    push(event) {
      const out: AgUiEvent[] = [];
      const ts = event.ts;
      if (event.type === 'RUN_STARTED') {
        if (runId !== null) return out; // a run is already open: a second start would break AG-UI's order
        runId = event.runId;
        out.push({
          type: 'RUN_STARTED',
          threadId: event.threadId,
          runId: event.runId,
          ...(event.parentRunId !== undefined ? { parentRunId: event.parentRunId } : {}),
          timestamp: ts,
        });
        return out;
      }
      if (runId === null || event.runId !== runId) return out;
      switch (event.type) {
        case 'TEXT_MESSAGE_CHUNK':
          if (event.delta === '') return out; // AG-UI requires a non-empty delta
          if (openMessage !== event.messageId) {
            closeMessage(ts, out);
            openMessage = event.messageId;
            out.push({
              type: 'TEXT_MESSAGE_START',
              messageId: event.messageId,
              role: 'assistant',
              timestamp: ts,
            });
          }
          out.push({
            type: 'TEXT_MESSAGE_CONTENT',
            messageId: event.messageId,
            delta: event.delta,
            timestamp: ts,
          });
          return out;
        case 'TOOL_CALL_STARTED':
          closeMessage(ts, out);
          out.push({
            type: 'TOOL_CALL_START',
            toolCallId: event.toolCallId,
            toolCallName: event.toolName,
            timestamp: ts,
          });
          // Threadline does not stream tool arguments, so the argument phase ends at once.
          out.push({ type: 'TOOL_CALL_END', toolCallId: event.toolCallId, timestamp: ts });
          return out;
        case 'TOOL_CALL_RESULT':
          out.push({
            type: 'TOOL_CALL_RESULT',
            messageId: `${event.toolCallId}:result`,
            toolCallId: event.toolCallId,
            content: JSON.stringify(event.ok ? { ok: true } : { ok: false, error: event.error ?? 'failed' }),
            role: 'tool',
            timestamp: ts,
          });
          return out;
        case 'STATE_CHANGED':
          out.push({
            type: 'CUSTOM',
            name: 'threadline.state_changed',
            value: { scope: event.scope, value: event.value },
            timestamp: ts,
          });
          return out;
        case 'RUN_ERROR':
          closeMessage(ts, out);
          out.push({
            type: 'RUN_ERROR',
            message: event.message,
            ...(event.code !== undefined ? { code: event.code } : {}),
            timestamp: ts,
          });
          runId = null;
          return out;
        case 'RUN_FINISHED':
          closeMessage(ts, out);
          out.push({
            type: 'RUN_FINISHED',
            threadId: event.threadId,
            runId: event.runId,
            ...(event.traceId !== undefined ? { result: { traceId: event.traceId } } : {}),
            timestamp: ts,
          });
          runId = null;
          return out;
        default:
          return out;
      }
    },
  };
}

/**
 * Maps a sequence of Threadline events to AG-UI events, so AG-UI clients can consume Threadline runs.
 * @example
 * const agui = toAgUiEvents(storedEvents);
 */
export function toAgUiEvents(events: Iterable<AgentEvent>): AgUiEvent[] {
  const mapper = createAgUiMapper();
  const out: AgUiEvent[] = [];
  for (const e of events) for (const m of mapper.push(e)) out.push(m);
  return out;
}
