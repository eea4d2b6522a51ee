import type { AgentEvent } from './events.js';

/**
 * A message as AG-UI 1.0 materialises it (the subset Threadline produces): the user's own message, an assistant
 * message with text or with a tool call, and a tool's result.
 */
export type AgUiMessage =
  | { id: string; role: 'user'; content: string }
  | { id: string; role: 'assistant'; content: string }
  | {
      id: string;
      role: 'assistant';
      toolCalls: { id: string; type: 'function'; function: { name: string; arguments: string } }[];
    }
  | { id: string; role: 'tool'; toolCallId: string; content: string };

/**
 * AG-UI event objects as produced by the bridge (the subset of AG-UI 1.0's event types Threadline maps to).
 * Field names follow the AG-UI protocol; `timestamp` carries Threadline's `ts`.
 */
export type AgUiEvent =
  | {
      type: 'RUN_STARTED';
      threadId: string;
      runId: string;
      parentRunId?: string;
      timestamp: number;
      metadata?: Record<string, unknown>;
    }
  | { type: 'MESSAGES_SNAPSHOT'; messages: AgUiMessage[]; timestamp: number }
  | { type: 'TEXT_MESSAGE_START'; messageId: string; role: 'assistant' | 'user'; timestamp: number }
  | { type: 'TEXT_MESSAGE_CONTENT'; messageId: string; delta: string; timestamp: number }
  | { type: 'TEXT_MESSAGE_END'; messageId: string; timestamp: number }
  | { type: 'TOOL_CALL_START'; toolCallId: string; toolCallName: string; timestamp: number }
  | { type: 'TOOL_CALL_ARGS'; toolCallId: string; delta: string; timestamp: number }
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
  | {
      type: 'RUN_FINISHED';
      threadId: string;
      runId: string;
      result?: unknown;
      outcome?:
        | { type: 'cancelled' }
        | {
            type: 'interrupt';
            interrupts: { id: string; reason: string; toolCallId?: string; expiresAt?: string }[];
          };
      timestamp: number;
    };

/**
 * A stateful mapper from Threadline events to AG-UI events. It keeps AG-UI's rules: a run starts with
 * RUN_STARTED; TEXT_MESSAGE_START/END and TOOL_CALL_START/END pair up; an open message is closed before a
 * tool call and before the run ends; nothing of a run follows its RUN_ERROR or RUN_FINISHED.
 *
 * A USER_MESSAGE (stored before the run it starts) is held and sent as a `user` text message
 * (TEXT_MESSAGE_START role `user`, one TEXT_MESSAGE_CONTENT, TEXT_MESSAGE_END) right after its run's
 * RUN_STARTED; its AG-UI message id is the `clientMessageId`, so the sender recognises its own message. A run
 * whose log has no RUN_STARTED (it failed before the agent answered) gets one at its first event.
 * TOOL_CALL_STARTED's `args` becomes one TOOL_CALL_ARGS. RUN_ERROR `cancelled` becomes RUN_FINISHED with
 * outcome `cancelled` (AG-UI 1.0: stopped, not failed). STATE_CHANGED becomes a CUSTOM event named
 * `threadline.state_changed`; TOOL_APPROVAL_REQUESTED and TOOL_APPROVAL_RESOLVED become CUSTOM events named
 * `threadline.tool_approval_requested` / `threadline.tool_approval_resolved` (value: the event without type,
 * threadId, runId, ts); RUN_FINISHED's `usage` goes into `result.usage`. Events of another run than the open one, and events outside a run, are dropped. HISTORY_WINDOWED (a UI hint about the
 * model's view) is dropped.
 */
export interface AgUiMapper {
  /** Maps one event; returns zero or more AG-UI events. */
  push(event: AgentEvent): AgUiEvent[];
}

/**
 * Creates an {@link AgUiMapper}.
 * @example
 * const mapper = createAgUiMapper();
 * for await (const event of liveEvents) for (const e of mapper.push(event)) send(e);
 */
export function createAgUiMapper(): AgUiMapper {
  let runId: string | null = null;
  let openMessage: string | null = null;
  let pendingUser: Extract<AgentEvent, { type: 'USER_MESSAGE' }> | null = null;
  const closeMessage = (ts: number, out: AgUiEvent[]) => {
    if (openMessage !== null) {
      out.push({ type: 'TEXT_MESSAGE_END', messageId: openMessage, timestamp: ts });
      openMessage = null;
    }
  };
  const startRun = (
    event: { threadId: string; runId: string; ts: number; parentRunId?: string | undefined },
    out: AgUiEvent[],
  ) => {
    runId = event.runId;
    out.push({
      type: 'RUN_STARTED',
      threadId: event.threadId,
      runId: event.runId,
      ...(event.parentRunId !== undefined ? { parentRunId: event.parentRunId } : {}),
      timestamp: event.ts,
    });
    const user = pendingUser;
    pendingUser = null;
    if (user === null || user.runId !== event.runId) return;
    const messageId = user.clientMessageId;
    out.push(
      { type: 'TEXT_MESSAGE_START', messageId, role: 'user', timestamp: user.ts },
      { type: 'TEXT_MESSAGE_CONTENT', messageId, delta: user.text, timestamp: user.ts },
      { type: 'TEXT_MESSAGE_END', messageId, timestamp: user.ts },
    );
  };
  return {
    push(event) {
      const out: AgUiEvent[] = [];
      const ts = event.ts;
      if (event.type === 'USER_MESSAGE') {
        if (runId === null) pendingUser = event;
        return out;
      }
      if (event.type === 'RUN_STARTED') {
        if (runId !== null) return out; // a run is already open: a second start would break AG-UI's order
        startRun(event, out);
        return out;
      }
      if (runId === null && pendingUser !== null && pendingUser.runId === event.runId) startRun(event, out);
      if (runId === null || event.runId !== runId) return out;
      switch (event.type) {
        case 'TEXT_MESSAGE_CHUNK':
          if (event.delta === '') return out;
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
          // Threadline has the arguments whole when the call starts: one delta, then the argument phase ends.
          if (event.args !== undefined && event.args !== '') {
            out.push({
              type: 'TOOL_CALL_ARGS',
              toolCallId: event.toolCallId,
              delta: event.args,
              timestamp: ts,
            });
          }
          out.push({ type: 'TOOL_CALL_END', toolCallId: event.toolCallId, timestamp: ts });
          return out;
        case 'TOOL_CALL_RESULT':
          out.push({
            type: 'TOOL_CALL_RESULT',
            messageId: toolResultMessageId(event.toolCallId),
            toolCallId: event.toolCallId,
            content: toolResultContent(event),
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
        case 'TOOL_APPROVAL_REQUESTED':
        case 'TOOL_APPROVAL_RESOLVED': {
          // The Threadline run stays open while it waits (AG-UI's interrupt outcome would end it), so the
          // request and the decision travel as CUSTOM events.
          closeMessage(ts, out);
          const { type, threadId: _t, runId: _r, ts: _ts, ...value } = event;
          out.push({
            type: 'CUSTOM',
            name:
              type === 'TOOL_APPROVAL_REQUESTED'
                ? 'threadline.tool_approval_requested'
                : 'threadline.tool_approval_resolved',
            value,
            timestamp: ts,
          });
          return out;
        }
        case 'RUN_ERROR':
          closeMessage(ts, out);
          if (event.code === 'cancelled') {
            out.push({
              type: 'RUN_FINISHED',
              threadId: event.threadId,
              runId: event.runId,
              outcome: { type: 'cancelled' },
              timestamp: ts,
            });
          } else {
            out.push({
              type: 'RUN_ERROR',
              message: event.message,
              ...(event.code !== undefined ? { code: event.code } : {}),
              timestamp: ts,
            });
          }
          runId = null;
          return out;
        case 'RUN_FINISHED':
          closeMessage(ts, out);
          out.push({
            type: 'RUN_FINISHED',
            threadId: event.threadId,
            runId: event.runId,
            ...(event.traceId !== undefined || event.usage !== undefined
              ? {
                  result: {
                    ...(event.traceId !== undefined ? { traceId: event.traceId } : {}),
                    ...(event.usage !== undefined ? { usage: event.usage } : {}),
                  },
                }
              : {}),
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
 * Maps a sequence of Threadline events (e.g. a thread's stored log) to AG-UI events, so AG-UI clients can
 * consume Threadline runs. See {@link AgUiMapper} for the rules.
 * @example
 * const agui = toAgUiEvents(storedEvents);
 */
export function toAgUiEvents(events: Iterable<AgentEvent>): AgUiEvent[] {
  const mapper = createAgUiMapper();
  const out: AgUiEvent[] = [];
  for (const e of events) for (const m of mapper.push(e)) out.push(m);
  return out;
}

/** Folds Threadline events into the AG-UI messages they make. Create it with {@link createAgUiMessageBuilder}. */
export interface AgUiMessageBuilder {
  /** Takes one event (any run, any order the log has). */
  push(event: AgentEvent): void;
  /** The messages so far, oldest first: at most `maxMessages`, the newest kept. */
  messages(): AgUiMessage[];
}

/**
 * Creates an {@link AgUiMessageBuilder}: the messages an AG-UI client holds after applying
 * {@link toAgUiEvents} of the same events (the tests check this against `@ag-ui/client`). A USER_MESSAGE
 * becomes a `user` message whose id is its `clientMessageId`; text chunks with one `messageId` one `assistant`
 * message; a tool call an `assistant` message (id = `toolCallId`) with one entry in `toolCalls`; a tool result a
 * `tool` message placed after its call, as AG-UI clients place it. Bounded: only the newest `maxMessages`
 * (default 1,000) are kept.
 * @example
 * const builder = createAgUiMessageBuilder();
 * for (const event of log) builder.push(event);
 * const snapshot = { type: 'MESSAGES_SNAPSHOT', messages: builder.messages() };
 */
export function createAgUiMessageBuilder(options: { maxMessages?: number } = {}): AgUiMessageBuilder {
  const max = options.maxMessages ?? 1_000;
  if (!Number.isSafeInteger(max) || max < 1) throw new RangeError('maxMessages must be a positive integer');
  let list: AgUiMessage[] = [];
  /** Messages by id and tool call ids, so a long log costs O(1) per chunk. */
  let byId = new Map<string, AgUiMessage>();
  let calls = new Set<string>();
  const add = (message: AgUiMessage) => {
    list.push(message);
    byId.set(message.id, message);
    if ('toolCalls' in message) for (const c of message.toolCalls) calls.add(c.id);
    // Trimmed in steps of `max`, so that trimming costs amortised O(1) per message.
    if (list.length >= 2 * max) {
      list = list.slice(list.length - max);
      byId = new Map(list.map((m) => [m.id, m]));
      calls = new Set(list.flatMap((m) => ('toolCalls' in m ? m.toolCalls.map((c) => c.id) : [])));
    }
  };
  return {
    push(event) {
      switch (event.type) {
        case 'USER_MESSAGE':
          if (!byId.has(event.clientMessageId))
            add({ id: event.clientMessageId, role: 'user', content: event.text });
          return;
        case 'TEXT_MESSAGE_CHUNK': {
          if (event.delta === '') return;
          const found = byId.get(event.messageId);
          if (found === undefined) add({ id: event.messageId, role: 'assistant', content: event.delta });
          else if ('content' in found) found.content += event.delta;
          return;
        }
        case 'TOOL_CALL_STARTED':
          if (calls.has(event.toolCallId)) return;
          add({
            id: event.toolCallId,
            role: 'assistant',
            toolCalls: [
              {
                id: event.toolCallId,
                type: 'function',
                function: { name: event.toolName, arguments: event.args ?? '' },
              },
            ],
          });
          return;
        case 'TOOL_CALL_RESULT': {
          const message: AgUiMessage = {
            id: toolResultMessageId(event.toolCallId),
            role: 'tool',
            toolCallId: event.toolCallId,
            content: toolResultContent(event),
          };
          // After the call's message and the results already there, as AG-UI clients insert it.
          const call = calls.has(event.toolCallId)
            ? list.findIndex((m) => 'toolCalls' in m && m.toolCalls.some((c) => c.id === event.toolCallId))
            : -1;
          if (call === -1) {
            add(message);
            return;
          }
          let at = call + 1;
          while (at < list.length && list[at]!.role === 'tool') at++;
          list.splice(at, 0, message);
          byId.set(message.id, message);
          return;
        }
        default:
          return;
      }
    },
    messages() {
      return list.length > max ? list.slice(list.length - max) : [...list];
    },
  };
}

/**
 * The AG-UI messages a sequence of Threadline events makes (see {@link createAgUiMessageBuilder}).
 * @example
 * const messages = toAgUiMessages(storedEvents);
 */
export function toAgUiMessages(
  events: Iterable<AgentEvent>,
  options: { maxMessages?: number } = {},
): AgUiMessage[] {
  const builder = createAgUiMessageBuilder(options);
  for (const e of events) builder.push(e);
  return builder.messages();
}

function toolResultMessageId(toolCallId: string): string {
  return `${toolCallId}:result`;
}

function toolResultContent(event: Extract<AgentEvent, { type: 'TOOL_CALL_RESULT' }>): string {
  return JSON.stringify(event.ok ? { ok: true } : { ok: false, error: event.error ?? 'failed' });
}
