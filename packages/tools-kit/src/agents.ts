/**
 * `@openai/agents` binding: turns a tool manifest into function tools that call the host through a
 * {@link ToolClient}, so the agent gets the host's tools without redefining them.
 * @packageDocumentation
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { tool } from '@openai/agents';
import type { FunctionTool } from '@openai/agents';
import { ID_PATTERN, LIMITS } from '@threadline/contracts';
import type { ToolError, ToolManifest, ToolResult } from '@threadline/contracts';
import type { ToolClient } from './client.js';
import { ToolsKitError } from './errors.js';

/** What {@link toAgentTools} reports after each call. */
export interface AgentToolResultInfo {
  /** The SDK's call id, when the SDK gave one. */
  callId?: string;
  /** The host's tool name (e.g. `profile.patch`; the model sees `profile_patch`). */
  name: string;
  result: ToolResult;
}

/** Options of {@link toAgentTools}. */
export interface ToAgentToolsOptions {
  /** Called once per tool call with its result, so the runner can emit TOOL_CALL_RESULT (ok or not). */
  onResult?(info: AgentToolResultInfo): void;
}

/**
 * Turns a manifest into `@openai/agents` function tools (JSON Schema parameters, strict mode), in manifest
 * order. Internal entries (session, events) are skipped. A failed call is returned to the model as an error text and
 * reported through `onResult`; nothing rejects. The SDK's call id is sent as the idempotency key.
 * @example
 * const manifest = await client.manifest();
 * if (manifest.ok) agent.tools.push(...toAgentTools(client, manifest.data, { onResult }));
 */
export function toAgentTools(
  client: ToolClient,
  manifest: ToolManifest,
  options: ToAgentToolsOptions = {},
): FunctionTool[] {
  const out: FunctionTool[] = [];
  const seen = new Map<string, string>();
  for (const entry of manifest.tools) {
    if (entry.internal) continue;
    const report = (info: AgentToolResultInfo) => {
      try {
        options.onResult?.(info);
      } catch {
        // A broken observer must not turn a finished tool call into a failed one.
      }
    };
    const execute = async (
      input: unknown,
      _runContext?: unknown,
      details?: { toolCall?: { callId?: string }; signal?: AbortSignal },
    ) => {
      const callId = details?.toolCall?.callId;
      const idempotencyKey =
        callId !== undefined && callId.length <= LIMITS.maxIdLength && ID_PATTERN.test(callId)
          ? callId
          : undefined;
      const result = await client.call(entry.name, input, {
        ...(details?.signal ? { signal: details.signal } : {}),
        ...(idempotencyKey ? { idempotencyKey } : {}),
      });
      report({ ...(callId !== undefined ? { callId } : {}), name: entry.name, result });
      return result.ok
        ? typeof result.data === 'string'
          ? result.data
          : JSON.stringify(result.data ?? null)
        : errorText(result.error);
    };
    const errorFunction = (_ctx: unknown, error: unknown, details?: { toolCall?: { callId?: string } }) => {
      // Reached when the SDK cannot parse the model's arguments; the router never saw the call. The SDK
      // withholds `details` here (redaction), so the call id comes from the invoke wrapper below.
      const callId = details?.toolCall?.callId ?? currentCallId.getStore();
      const failure: ToolError = {
        code: 'invalid_input',
        message: `the arguments for ${entry.name} were not valid: ${error instanceof Error ? error.message.slice(0, 300) : 'unknown'}`,
      };
      report({
        ...(callId !== undefined ? { callId } : {}),
        name: entry.name,
        result: { ok: false, error: failure },
      });
      return errorText(failure);
    };
    // `always`: every call waits for a person; `check`: the host decides per call (a failed check asks).
    const needsApproval =
      entry.needsApproval === 'always'
        ? true
        : entry.needsApproval === 'check'
          ? async (_ctx: unknown, input: unknown) => {
              const answer = await client.needsApproval(entry.name, input);
              return answer.ok ? answer.data.needsApproval : true;
            }
          : false;
    const base = {
      name: entry.name,
      description: entry.description || entry.name,
      execute,
      errorFunction,
      needsApproval,
    };
    let made: FunctionTool;
    try {
      made = tool({
        ...base,
        parameters: structuredClone(entry.inputSchema) as never,
        strict: true,
      }) as unknown as FunctionTool;
    } catch {
      // Strict mode cannot express open-ended shapes (free-form records, `propertyNames`, typeless objects).
      // Such a tool is still offered, non-strict: the router validates every call strictly anyway.
      made = tool({
        ...base,
        parameters: structuredClone(entry.inputSchema) as never,
        strict: false,
      }) as unknown as FunctionTool;
    }
    const clash = seen.get(made.name);
    if (clash !== undefined) {
      throw new ToolsKitError(
        'duplicate_tool',
        `tools ${clash} and ${entry.name} both become ${made.name} for the model; rename one`,
      );
    }
    seen.set(made.name, entry.name);
    const invoke = made.invoke;
    made.invoke = (runContext, input, details) =>
      currentCallId.run(details?.toolCall?.callId, () => invoke(runContext, input, details));
    out.push(made);
  }
  return out;
}

const currentCallId = new AsyncLocalStorage<string | undefined>();

function errorText(error: ToolError): string {
  const issues = (error.issues ?? [])
    .slice(0, 10)
    .map((i) => `\n- ${i.path || '(input)'}: ${i.message}`)
    .join('');
  return `Error (${error.code}): ${error.message}${issues}`;
}
