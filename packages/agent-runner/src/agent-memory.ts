import type { AgentInputItem, Session } from '@openai/agents';
import type { JsonValue, ToolResult } from '@threadline/contracts';
import type { ToolClient } from '@threadline/tools-kit';
import { AgentRunnerError } from './errors.js';

// The tool endpoints keep the Agents SDK's word in their names (`session.get`, `session.add`, ...): they are the
// wire names of tools-kit's built-in agent-memory tools, and this class is an SDK `Session`.

/** Largest batch `session.add` accepts in one call (the tools-kit contract caps `items` at 1000). */
const MAX_ADD_BATCH = 1000;

/** Most items `session.get` returns in one call, and so the largest history window. */
export const MAX_HISTORY_ITEMS = 1000;
/** Items of a thread's history the model gets by default: the newest 200. */
export const DEFAULT_HISTORY_ITEMS = 200;

/** Options of {@link AgentMemory}. */
export interface AgentMemoryOptions {
  /** Timeout per agent-memory tool call in ms (default: the client's own timeout). */
  timeoutMs?: number;
  /**
   * The history window: how many of the newest items a run reads when the SDK asks without a limit
   * (1..1000, default {@link DEFAULT_HISTORY_ITEMS}).
   */
  historyItems?: number;
}

/** What the last {@link AgentMemory.getItems} read: how many items it kept and whether older ones were left out. */
export interface HistoryWindow {
  /** Items handed to the SDK. */
  items: number;
  /** True when the thread holds older items the model does not see. */
  omitted: boolean;
  /** True when the items hold a compaction item: earlier turns reach the model as a summary. */
  compacted: boolean;
}

/** Checks a history window size; throws `invalid_options` when it is not an integer in 1..1000. */
export function checkHistoryItems(value: number | undefined): number {
  if (value === undefined) return DEFAULT_HISTORY_ITEMS;
  if (!Number.isSafeInteger(value) || value < 1 || value > MAX_HISTORY_ITEMS) {
    throw new AgentRunnerError(
      'invalid_options',
      `historyItems must be an integer from 1 to ${MAX_HISTORY_ITEMS}, got ${String(value)}`,
    );
  }
  return value;
}

/** Tool results whose call may have fallen out of the window: the model API refuses an output without its call. */
const OUTPUT_TYPE = /_(result|output)$/;

/** The text of a user message item (string content or input_text parts), or undefined for any other item. */
function userText(item: JsonValue | undefined): string | undefined {
  if (typeof item !== 'object' || item === null || Array.isArray(item)) return undefined;
  if (item.role !== 'user' || (item.type !== undefined && item.type !== 'message')) return undefined;
  const content = item.content;
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return undefined;
  return content
    .map((part) =>
      typeof part === 'object' && part !== null && !Array.isArray(part) && typeof part.text === 'string'
        ? part.text
        : '',
    )
    .join('');
}

/**
 * A thread's agent memory as an Agents SDK `Session` (the SDK's interface for it): the items live behind the API,
 * and every read and write goes through the built-in `session.*` tool endpoints with the run's act-as token, so
 * the agent service keeps no database.
 *
 * @example
 * const memory = new AgentMemory(toolClient, request.threadId);
 * await sdkRunner.run(agent, 'hello', { stream: true, session: memory });
 */
export class AgentMemory implements Session {
  readonly #client: ToolClient;
  readonly #threadId: string;
  readonly #timeoutMs: number | undefined;
  readonly #historyItems: number;
  #lastWindow: HistoryWindow | undefined;
  /**
   * Items in this memory's view when its first read left older ones out: what it read plus what was added
   * since. Later reads (the SDK's compaction reads with explicit limits) stay inside this view, so the memory
   * the SDK sees is the window the model saw, never the older part of the thread.
   */
  #view: number | undefined;

  constructor(client: ToolClient, threadId: string, options: AgentMemoryOptions = {}) {
    this.#client = client;
    this.#threadId = threadId;
    this.#timeoutMs = options.timeoutMs;
    this.#historyItems = checkHistoryItems(options.historyItems);
  }

  /** What the last `getItems` read, or undefined before the first read. */
  get lastWindow(): HistoryWindow | undefined {
    return this.#lastWindow;
  }

  /** The SDK `Session` id: the thread id. */
  async getSessionId(): Promise<string> {
    return this.#threadId;
  }

  /**
   * The newest items of the thread, oldest first, in one call: `limit` of them, or the history window when the
   * SDK passes none (it passes none at the start of a run).
   */
  async getItems(limit?: number): Promise<AgentInputItem[]> {
    let n =
      limit === undefined ? this.#historyItems : Math.max(1, Math.min(MAX_HISTORY_ITEMS, Math.floor(limit)));
    if (this.#view !== undefined) {
      if (this.#view === 0) return [];
      n = Math.min(n, this.#view);
    }
    const first = this.#lastWindow === undefined;
    const data = await this.#call<{ items: JsonValue[]; more?: boolean }>('session.get', { limit: n });
    if (!Array.isArray(data.items))
      throw new AgentRunnerError('tool_client_error', 'session.get returned no items array');
    let items = data.items;
    // An API without `more` (older tools-kit) still tells by a full page that older items may exist.
    const omitted = data.more ?? items.length >= n;
    if (omitted) {
      let start = 0;
      while (start < items.length && OUTPUT_TYPE.test(String((items[start] as { type?: unknown })?.type)))
        start++;
      if (start > 0) items = items.slice(start);
    }
    const compacted = items.some((i) => (i as { type?: unknown } | null)?.type === 'compaction');
    this.#lastWindow = { items: items.length, omitted, compacted };
    if (first && omitted) this.#view = items.length;
    return items as unknown as AgentInputItem[];
  }

  /**
   * For a regenerate: removes the thread's newest turn when it answers `text`, i.e. its newest user message and
   * every item after it (the old answer, its tool calls), so the model sees neither the old answer nor the
   * message twice (the run adds the message back as its input). When the newest user message is another one,
   * the replaced run never reached the history and nothing is removed. Looks at the newest
   * {@link MAX_HISTORY_ITEMS} items at most; returns how many it removed.
   */
  async dropTurn(text: string): Promise<number> {
    const data = await this.#call<{ items: JsonValue[] }>('session.get', { limit: MAX_HISTORY_ITEMS });
    const items = Array.isArray(data.items) ? data.items : [];
    let i = items.length - 1;
    while (i >= 0 && userText(items[i]) === undefined) i--;
    if (i < 0 || userText(items[i]) !== text) return 0;
    for (let n = i; n < items.length; n++) await this.#call('session.pop', {});
    return items.length - i;
  }

  async addItems(items: AgentInputItem[]): Promise<void> {
    // Items can carry undefined fields and class instances; the tool endpoint accepts plain JSON only.
    const plain = JSON.parse(JSON.stringify(items)) as JsonValue[];
    for (let i = 0; i < plain.length; i += MAX_ADD_BATCH) {
      const batch = plain.slice(i, i + MAX_ADD_BATCH);
      await this.#call('session.add', { items: batch });
      if (this.#view !== undefined) this.#view += batch.length;
    }
  }

  async popItem(): Promise<AgentInputItem | undefined> {
    const data = await this.#call<{ item: JsonValue | null }>('session.pop', {});
    if (data.item && this.#view !== undefined) this.#view = Math.max(0, this.#view - 1);
    return (data.item ?? undefined) as AgentInputItem | undefined;
  }

  /** Empties the thread's agent memory (the SDK `Session` method of that name). */
  async clearSession(): Promise<void> {
    await this.#call('session.clear', {});
    // The thread's memory is empty now: nothing older is left out of the view.
    this.#view = undefined;
  }

  async #call<T>(name: string, input: unknown): Promise<T> {
    const options = this.#timeoutMs === undefined ? {} : { timeoutMs: this.#timeoutMs };
    const result: ToolResult<T> = await this.#client.call<T>(name, input, options);
    if (!result.ok) {
      throw new AgentRunnerError(
        'tool_client_error',
        `agent memory tool ${name} failed: ${result.error.code}: ${result.error.message}`,
        { cause: result.error },
      );
    }
    return result.data;
  }
}

/** @deprecated use {@link AgentMemory}; removed in the next major. */
export const ToolSession = AgentMemory;
/** @deprecated use {@link AgentMemory}; removed in the next major. */
export type ToolSession = AgentMemory;
/** @deprecated use {@link AgentMemoryOptions}; removed in the next major. */
export type ToolSessionOptions = AgentMemoryOptions;
