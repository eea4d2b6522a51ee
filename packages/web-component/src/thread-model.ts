import type { SequencedAgentEvent } from '@threadline/contracts';

/** A message the user wrote (sent from here, or replayed from the log as USER_MESSAGE). */
export interface UserItem {
  kind: 'user';
  key: string;
  text: string;
  clientMessageId?: string;
  runId?: string;
  /** `sending` until acked or seen in the log; `failed` when the server refused it or the connection dropped first. */
  status: 'sending' | 'sent' | 'failed';
  error?: string;
  /** When it was sent (ms since the epoch): the server's time once stored, the browser's until then. */
  ts: number;
}

/** An assistant message reassembled from TEXT_MESSAGE_CHUNK deltas. */
export interface AssistantItem {
  kind: 'assistant';
  key: string;
  messageId: string;
  runId: string;
  text: string;
  complete: boolean;
  /** True when text beyond `maxMessageLength` was dropped. */
  truncated: boolean;
  /** Bumped on every change, so a renderer can skip untouched messages. */
  version: number;
  /** When its first text arrived (server time, ms since the epoch). */
  ts: number;
}

/** A tool call of a run. */
export interface ToolItem {
  kind: 'tool';
  key: string;
  runId: string;
  toolCallId: string;
  toolName: string;
  label?: string;
  status: 'running' | 'done' | 'failed';
  error?: string;
  /** The call's arguments (JSON text) while it waits for approval. */
  args?: string;
  /** `pending`: the run waits for the user's Approve or Reject (TOOL_APPROVAL_REQUESTED); then the decision. */
  approval?: 'pending' | 'approved' | 'rejected';
}

/** A run that ended with RUN_ERROR. */
export interface RunErrorItem {
  kind: 'run-error';
  key: string;
  runId: string;
  message: string;
  code?: string;
}

/**
 * The run `runId` answered from the newest part of the thread only (HISTORY_WINDOWED). The model keeps one such
 * row, the latest, placed where that run began.
 */
export interface HistoryDividerItem {
  kind: 'history-divider';
  key: string;
  runId: string;
  windowItems: number;
  /** Earlier turns reached the model as a summary (HISTORY_WINDOWED `reason: 'compacted'`). */
  compacted: boolean;
}

/** One row of the conversation. */
export type ChatItem = UserItem | AssistantItem | ToolItem | RunErrorItem | HistoryDividerItem;

/** Bounds of a {@link ThreadModel}. */
export interface ThreadModelLimits {
  /** Rows kept; the oldest are dropped beyond this. */
  maxItems: number;
  /** Characters kept per assistant message; the rest is dropped and the message marked truncated. */
  maxMessageLength: number;
}

/** Defaults: 1,000 rows, 1,000,000 characters per assistant message. */
export const DEFAULT_MODEL_LIMITS: Readonly<ThreadModelLimits> = Object.freeze({
  maxItems: 1_000,
  maxMessageLength: 1_000_000,
});

/** What one event changed, for announcements and events. */
export interface ApplyResult {
  /** Assistant messages that became complete with this event. */
  completed: AssistantItem[];
  /** Rows added or changed in a way that needs a render. */
  changed: boolean;
}

/**
 * The conversation of one thread, built from its event log. Pure data, no DOM: the element renders it.
 * Deduplication by seq happens before this (in the connection); this folds events into rows.
 */
export class ThreadModel {
  readonly items: ChatItem[] = [];
  /** The run in progress, if any. */
  activeRunId: string | undefined;
  private readonly byKey = new Map<string, ChatItem>();
  private readonly limits: ThreadModelLimits;

  constructor(limits: Partial<ThreadModelLimits> = {}) {
    this.limits = { ...DEFAULT_MODEL_LIMITS, ...limits };
  }

  /** Adds a message being sent from this element. */
  addPending(clientMessageId: string, text: string): UserItem {
    const item: UserItem = {
      kind: 'user',
      key: `c:${clientMessageId}`,
      clientMessageId,
      text,
      status: 'sending',
      ts: Date.now(),
    };
    this.push(item);
    return item;
  }

  /** Finds the row of a message sent from here. */
  pending(clientMessageId: string): UserItem | undefined {
    const item = this.byKey.get(`c:${clientMessageId}`);
    return item?.kind === 'user' ? item : undefined;
  }

  /** The server accepted a send and started `runId`. */
  acknowledge(clientMessageId: string, runId: string): void {
    const item = this.pending(clientMessageId);
    if (item) {
      item.status = 'sent';
      item.runId = runId;
      delete item.error;
    }
    this.activeRunId ??= runId;
  }

  /** A send failed (server refusal or lost connection). */
  fail(clientMessageId: string, error: string): boolean {
    const item = this.pending(clientMessageId);
    if (!item || item.status !== 'sending') return false;
    item.status = 'failed';
    item.error = error;
    return true;
  }

  /** Every message still waiting for an ack. */
  unacknowledged(): UserItem[] {
    return this.items.filter((i): i is UserItem => i.kind === 'user' && i.status === 'sending');
  }

  /** The user message that started `runId`, if known. */
  userMessageOf(runId: string): UserItem | undefined {
    return this.items.find((i): i is UserItem => i.kind === 'user' && i.runId === runId);
  }

  /** Folds one event into the rows. Unknown types never reach here (the guard drops them). */
  apply(event: SequencedAgentEvent): ApplyResult {
    const completed: AssistantItem[] = [];
    let changed = true;
    switch (event.type) {
      case 'USER_MESSAGE': {
        const mine = this.pending(event.clientMessageId);
        if (mine) {
          mine.status = 'sent';
          mine.runId = event.runId;
          mine.text = event.text;
          mine.ts = event.ts;
          delete mine.error;
        } else if (!this.byKey.has(`u:${event.messageId}`)) {
          this.push({
            kind: 'user',
            key: `u:${event.messageId}`,
            text: event.text,
            clientMessageId: event.clientMessageId,
            runId: event.runId,
            status: 'sent',
            ts: event.ts,
          });
        }
        break;
      }
      case 'RUN_STARTED': {
        this.activeRunId = event.runId;
        // A regenerate: the new answer takes the old one's place, under the same user message.
        const old = event.regenerates;
        changed = !!old;
        for (let n = old ? this.items.length : 0; n--;) {
          const i = this.items[n]!;
          if (i.runId !== old) continue;
          if (i.kind === 'user') i.runId = event.runId;
          else this.byKey.delete(this.items.splice(n, 1)[0]!.key);
        }
        break;
      }
      case 'TEXT_MESSAGE_CHUNK': {
        const key = `a:${event.messageId}`;
        let item = this.byKey.get(key) as AssistantItem | undefined;
        if (!item) {
          this.completeRun(event.runId, completed);
          item = {
            kind: 'assistant',
            key,
            messageId: event.messageId,
            runId: event.runId,
            text: '',
            complete: false,
            truncated: false,
            version: 0,
            ts: event.ts,
          };
          this.push(item);
        }
        const room = this.limits.maxMessageLength - item.text.length;
        if (room <= 0) {
          changed = !item.truncated;
          item.truncated = true;
        } else {
          if (event.delta.length > room) item.truncated = true;
          item.text += event.delta.length > room ? event.delta.slice(0, room) : event.delta;
        }
        item.version++;
        break;
      }
      case 'TOOL_APPROVAL_RESOLVED': {
        const item = this.byKey.get(`t:${event.toolCallId}`) as ToolItem | undefined;
        if (item) item.approval = event.approved ? 'approved' : 'rejected';
        break;
      }
      case 'TOOL_CALL_STARTED':
      case 'TOOL_CALL_RESULT':
      case 'TOOL_APPROVAL_REQUESTED': {
        this.completeRun(event.runId, completed);
        const key = `t:${event.toolCallId}`;
        let item = this.byKey.get(key) as ToolItem | undefined;
        if (!item) {
          item = {
            kind: 'tool',
            key,
            runId: event.runId,
            toolCallId: event.toolCallId,
            toolName: event.toolName,
            status: 'running',
          };
          this.push(item);
        }
        if (event.label) item.label = event.label;
        if (event.type === 'TOOL_APPROVAL_REQUESTED') {
          item.approval = 'pending';
          item.args = event.args;
        }
        if (event.type === 'TOOL_CALL_RESULT') {
          item.status = event.ok ? 'done' : 'failed';
          if (event.error) item.error = event.error;
        }
        break;
      }
      case 'RUN_ERROR':
      case 'RUN_FINISHED': {
        this.completeRun(event.runId, completed);
        for (const i of this.items)
          if (i.kind === 'tool' && i.runId === event.runId && i.status === 'running') i.status = 'failed';
        if (event.type === 'RUN_ERROR') {
          const item: RunErrorItem = {
            kind: 'run-error',
            key: `e:${event.runId}`,
            runId: event.runId,
            message: event.message,
          };
          if (event.code) item.code = event.code;
          if (!this.byKey.has(item.key)) this.push(item);
        }
        if (this.activeRunId === event.runId) this.activeRunId = undefined;
        for (const i of this.items) {
          if (i.kind === 'user' && i.runId === event.runId && i.status === 'sending') i.status = 'sent';
        }
        break;
      }
      case 'HISTORY_WINDOWED': {
        // One divider: the newest run's replaces an older one, so a long thread does not fill with them.
        const old = this.items.findIndex((i) => i.kind === 'history-divider');
        if (old >= 0) this.byKey.delete(this.items.splice(old, 1)[0]!.key);
        this.push({
          kind: 'history-divider',
          key: `h:${event.runId}`,
          runId: event.runId,
          windowItems: event.windowItems,
          compacted: event.reason === 'compacted',
        });
        break;
      }
      default:
        changed = false; // STATE_CHANGED: no row; the page hears it through agent-chat:event
    }
    return { completed, changed };
  }

  private completeRun(runId: string, completed: AssistantItem[]): void {
    for (const i of this.items) {
      if (i.kind === 'assistant' && i.runId === runId && !i.complete) {
        i.complete = true;
        i.version++;
        completed.push(i);
      }
    }
  }

  private push(item: ChatItem): void {
    this.items.push(item);
    this.byKey.set(item.key, item);
    while (this.items.length > this.limits.maxItems) {
      const old = this.items.shift();
      if (old) this.byKey.delete(old.key);
    }
  }
}
