import type { SequencedAgentEvent } from '@threadline/contracts';
import type { AssistantItem } from './thread-model.js';
import { humanise, runErrorText } from './words.js';

/*
 * Screen readers should hear new answers, not the replayed history. The protocol has no "replay done" marker,
 * so an event counts as live when it belongs to a run this element started, or when it arrived more than
 * REPLAY_WINDOW_MS after the connection opened and is not older (server clock) than that connection minus
 * HISTORY_SLACK_MS. Both clocks are used so that neither skew nor a slow replay alone announces history.
 */
/** How far (ms, server clock) before the connection opened an event may be and still count as live. */
export const HISTORY_SLACK_MS = 2_000;
/** How long (ms) after the connection opened events count as replayed history, unless they are the element's own. */
export const REPLAY_WINDOW_MS = 1_000;

/** Completed messages are announced to screen readers up to this many characters. */
const MAX_ANNOUNCEMENT = 1_000;

/** `text` as the live region says it: clipped to {@link MAX_ANNOUNCEMENT} characters. */
export function clipAnnouncement(text: string): string {
  return text.length > MAX_ANNOUNCEMENT ? `${text.slice(0, MAX_ANNOUNCEMENT)}…` : text;
}

/**
 * What the live region says for a live event that completed the assistant messages `completed`, or undefined
 * when the event is not worth a sentence (the region then keeps its text).
 */
export function announcementOf(event: SequencedAgentEvent, completed: AssistantItem[]): string | undefined {
  if (event.type === 'RUN_ERROR') return runErrorText(event.code);
  if (event.type === 'TOOL_APPROVAL_REQUESTED')
    return `${event.label ?? humanise(event.toolName)} needs your approval.`;
  if (event.type === 'TOOL_APPROVAL_RESOLVED') return event.approved ? 'Approved.' : 'Rejected.';
  const last = completed[completed.length - 1];
  return last && `Assistant: ${last.text}`;
}
