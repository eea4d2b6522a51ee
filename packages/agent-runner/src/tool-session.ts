import type { AgentInputItem, Session } from '@openai/agents';
import type { JsonValue, ToolResult } from '@threadline/contracts';
import type { ToolClient } from '@threadline/tools-kit';
import { AgentRunnerError } from './errors.js';

/** Largest batch `session.add` accepts in one call (the tools-kit contract caps `items` at 1000). */
const MAX_ADD_BATCH = 1000;

/** Options of {@link ToolSession}. */
export interface ToolSessionOptions {
  /** Timeout per session tool call in ms (default: the client's own timeout). */
  timeoutMs?: number;
}

/**
 * An Agents SDK `Session` whose history lives behind the API: every read and write goes through the
 * built-in `session.*` tool endpoints with the run's act-as token, so the agent service keeps no database.
 *
 * @example
 * const session = new ToolSession(toolClient, request.threadId);
 * await runner.run(agent, 'hello', { stream: true, session });
 */
export class ToolSession implements Session {
  readonly #client: ToolClient;
  readonly #threadId: string;
  readonly #timeoutMs: number | undefined;

  constructor(client: ToolClient, threadId: string, options: ToolSessionOptions = {}) {
    this.#client = client;
    this.#threadId = threadId;
    this.#timeoutMs = options.timeoutMs;
  }

  async getSessionId(): Promise<string> {
    return this.#threadId;
  }

  async getItems(limit?: number): Promise<AgentInputItem[]> {
    const input = limit === undefined ? {} : { limit: Math.max(1, Math.min(1000, Math.floor(limit))) };
    const data = await this.#call<{ items: JsonValue[] }>('session.get', input);
    if (!Array.isArray(data.items))
      throw new AgentRunnerError('tool_client_error', 'session.get returned no items array');
    return data.items as unknown as AgentInputItem[];
  }

  async addItems(items: AgentInputItem[]): Promise<void> {
    // Items can carry undefined fields and class instances; the tool endpoint accepts plain JSON only.
    const plain = JSON.parse(JSON.stringify(items)) as JsonValue[];
    for (let i = 0; i < plain.length; i += MAX_ADD_BATCH) {
      await this.#call('session.add', { items: plain.slice(i, i + MAX_ADD_BATCH) });
    }
  }

  async popItem(): Promise<AgentInputItem | undefined> {
    const data = await this.#call<{ item: JsonValue | null }>('session.pop', {});
    return (data.item ?? undefined) as AgentInputItem | undefined;
  }

  async clearSession(): Promise<void> {
    await this.#call('session.clear', {});
  }

  async #call<T>(name: string, input: unknown): Promise<T> {
    const options = this.#timeoutMs === undefined ? {} : { timeoutMs: this.#timeoutMs };
    const result: ToolResult<T> = await this.#client.call<T>(name, input, options);
    if (!result.ok) {
      throw new AgentRunnerError(
        'tool_client_error',
        `history tool ${name} failed: ${result.error.code}: ${result.error.message}`,
        { cause: result.error },
      );
    }
    return result.data;
  }
}
