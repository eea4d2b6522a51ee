import { randomUUID } from 'node:crypto';
import type { RunStreamEvent } from '@openai/agents';
import {
  ID_PATTERN,
  LIMITS,
  TOOL_NAME_PATTERN,
  createTextMessageChunkEvent,
  createToolCallResultEvent,
  createToolCallStartedEvent,
  type AgentEvent,
} from '@threadline/contracts';

/** How one tool call ended, as reported by the tool adapters (the SDK itself hides failures). */
export interface ToolOutcome {
  ok: boolean;
  error?: string;
}

/** Makes an SDK-provided id safe for the contract's id pattern without losing uniqueness in practice. */
export function toContractId(raw: string | undefined, fallbackPrefix: string): string {
  if (raw && raw.length <= LIMITS.maxIdLength && ID_PATTERN.test(raw)) return raw;
  if (!raw) return `${fallbackPrefix}_${randomUUID()}`;
  const cleaned = raw.replace(/[^A-Za-z0-9_.:-]/g, '_').slice(0, LIMITS.maxIdLength);
  return cleaned.length > 0 ? cleaned : `${fallbackPrefix}_${randomUUID()}`;
}

function toToolName(raw: string): string {
  if (raw.length <= LIMITS.maxToolNameLength && TOOL_NAME_PATTERN.test(raw)) return raw;
  const cleaned = raw.replace(/[^A-Za-z0-9._-]/g, '_').slice(0, LIMITS.maxToolNameLength);
  return /^[A-Za-z]/.test(cleaned) ? cleaned : `t${cleaned}`.slice(0, LIMITS.maxToolNameLength);
}

function truncate(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

/**
 * Turns the Agents SDK stream into contract events: one TEXT_MESSAGE_CHUNK per text delta (one messageId per
 * assistant message), TOOL_CALL_STARTED (with the call's `args`) when the SDK announces a call and
 * TOOL_CALL_RESULT with the outcome the tool adapters recorded. Stateful: one mapper per run.
 */
export class EventMapper {
  readonly #threadId: string;
  readonly #runId: string;
  readonly #outcomes: Map<string, ToolOutcome>;
  readonly #displayName: (sdkName: string) => string;
  #messageId: string | null = null;
  #itemId: string | undefined;

  constructor(options: {
    threadId: string;
    runId: string;
    outcomes: Map<string, ToolOutcome>;
    displayName?: (sdkName: string) => string;
  }) {
    this.#threadId = options.threadId;
    this.#runId = options.runId;
    this.#outcomes = options.outcomes;
    this.#displayName = options.displayName ?? ((n) => n);
  }

  /** The contract events for one SDK stream event (often none). */
  map(event: RunStreamEvent): AgentEvent[] {
    const base = { threadId: this.#threadId, runId: this.#runId };
    if (event.type === 'raw_model_stream_event') {
      const data = event.data;
      if (data.type === 'response_started') {
        this.#messageId = null;
        return [];
      }
      if (data.type !== 'output_text_delta' || data.delta.length === 0) return [];
      // A new model response or a different output item is a new assistant message.
      if (this.#messageId === null || (data.itemId !== undefined && data.itemId !== this.#itemId)) {
        this.#messageId = `msg_${randomUUID()}`;
      }
      this.#itemId = data.itemId;
      const out: AgentEvent[] = [];
      for (let i = 0; i < data.delta.length; i += LIMITS.maxDeltaLength) {
        out.push(
          createTextMessageChunkEvent({
            ...base,
            messageId: this.#messageId,
            delta: data.delta.slice(i, i + LIMITS.maxDeltaLength),
          }),
        );
      }
      return out;
    }
    if (event.type !== 'run_item_stream_event') return [];
    if (event.name === 'tool_called') {
      this.#messageId = null;
      const raw = event.item.rawItem as {
        type: string;
        callId?: string;
        id?: string;
        name?: string;
        arguments?: unknown;
      };
      const sdkName = raw.name ?? raw.type;
      // Arguments longer than the contract allows are left out rather than cut: cut JSON is not JSON.
      const args =
        typeof raw.arguments === 'string' && raw.arguments.length <= LIMITS.maxDeltaLength
          ? raw.arguments
          : undefined;
      return [
        createToolCallStartedEvent({
          ...base,
          toolCallId: toContractId(raw.callId ?? raw.id, 'call'),
          toolName: toToolName(this.#displayName(sdkName)),
          ...(args !== undefined ? { args } : {}),
        }),
      ];
    }
    if (event.name === 'tool_output') {
      const raw = event.item.rawItem as { type: string; callId?: string; id?: string; name?: string };
      const callId = raw.callId ?? raw.id;
      const outcome = (callId !== undefined ? this.#outcomes.get(callId) : undefined) ?? { ok: true };
      if (callId !== undefined) this.#outcomes.delete(callId);
      const sdkName = raw.name ?? raw.type;
      return [
        createToolCallResultEvent({
          ...base,
          toolCallId: toContractId(callId, 'call'),
          toolName: toToolName(this.#displayName(sdkName)),
          ok: outcome.ok,
          ...(outcome.ok
            ? {}
            : { error: truncate(outcome.error || 'the tool failed', LIMITS.maxErrorMessageLength) }),
        }),
      ];
    }
    return [];
  }
}
