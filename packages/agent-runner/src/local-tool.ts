import { tool } from '@openai/agents';
import type { RunContextData } from './runner-options.js';

function defaultToolError(message: string): string {
  return `An error occurred while running the tool. Please try again. Error: ${message}`;
}

/**
 * The SDK's `tool()`, except that a failing call shows as `ok: false` in TOOL_CALL_RESULT (the SDK itself turns a
 * throwing tool into a normal output). The model still gets the error text. Use it for `localTools`.
 *
 * @example
 * createRunner({ localTools: [localTool({ name: 'lookup', description: '...', parameters: z.object({ q: z.string() }), execute })] });
 */
export const localTool: typeof tool = ((options: Parameters<typeof tool>[0]) => {
  if (options.errorFunction === null) return tool(options);
  const own = options.errorFunction;
  // The options' union type does not survive the spread; the result is still exactly what `tool()` accepts.
  return tool({
    ...options,
    errorFunction: (
      runContext: Parameters<NonNullable<typeof own>>[0],
      error: unknown,
      details?: Parameters<NonNullable<typeof own>>[2],
    ) => {
      const message = error instanceof Error ? error.message : String(error);
      const callId = details?.toolCall?.callId;
      const ctx = runContext.context as Partial<RunContextData> | undefined;
      if (callId && typeof ctx?.reportToolError === 'function') ctx.reportToolError(callId, message);
      return own ? own(runContext, error, details) : defaultToolError(message);
    },
  } as Parameters<typeof tool>[0]);
}) as typeof tool;
