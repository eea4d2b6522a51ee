import type { RunErrorEvent, RunFinishedEvent, SequencedAgentEvent } from '@threadline/contracts';
import type { ChatProblem, ConnectionChange } from './connection.js';

/** Detail of `agent-chat:event`: one contract event as it arrived (deduplicated, in seq order). */
export interface AgentChatEventDetail {
  event: SequencedAgentEvent;
}

/** Detail of `agent-chat:run-finished`: a run ended, normally (`ok`) or with RUN_ERROR. */
export interface AgentChatRunFinishedDetail {
  runId: string;
  ok: boolean;
  event: RunFinishedEvent | RunErrorEvent;
}

/**
 * Detail of `agent-chat:regenerate`: the user asked for a new answer to the message that `runId` answered (Retry
 * after Stop or an error, or Regenerate on the last answer). Cancel the event to start that run yourself; if
 * nobody cancels it, the element sends a `regenerate` frame: a new answer replaces that run's, with no second
 * user bubble.
 */
export interface AgentChatRegenerateDetail {
  runId: string;
  text: string;
  clientMessageId?: string;
}

/** Detail of `agent-chat:error`: a server `error` message or a problem of the element itself. */
export type AgentChatErrorDetail = ChatProblem;

/** Detail of `agent-chat:connection`. */
export type AgentChatConnectionDetail = ConnectionChange;

// The one list of the element's DOM events: `addEventListener` on an element is typed from it, and so is the
// element's own `emit`.
declare global {
  interface HTMLElementEventMap {
    'agent-chat:event': CustomEvent<AgentChatEventDetail>;
    'agent-chat:run-finished': CustomEvent<AgentChatRunFinishedDetail>;
    'agent-chat:error': CustomEvent<AgentChatErrorDetail>;
    'agent-chat:connection': CustomEvent<AgentChatConnectionDetail>;
    'agent-chat:regenerate': CustomEvent<AgentChatRegenerateDetail>;
  }
}

/** The name of one of the element's DOM events (`agent-chat:…`). */
export type AgentChatEventName = Extract<keyof HTMLElementEventMap, `agent-chat:${string}`>;

/** The `detail` of the element's event `K`. */
export type AgentChatEventDetailOf<K extends AgentChatEventName> =
  HTMLElementEventMap[K] extends CustomEvent<infer D> ? D : never;
