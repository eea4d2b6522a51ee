import { RunContext, RunState, Usage, type Agent, type RunToolApprovalItem } from '@openai/agents';
import {
  LIMITS,
  createToolApprovalRequestedEvent,
  type AgentEvent,
  type RunRequest,
  type RunUsage,
} from '@threadline/contracts';
import type { ToolClient } from '@threadline/tools-kit';
import { AgentRunnerError } from './errors.js';
import type { ToolOutcome } from './event-mapper.js';
import type { RunContextData } from './runner-options.js';

// A run that waits for a person's approval of a tool call pauses: its SDK state is saved behind the API and its
// stream ends. The resumed run loads that state, applies the decision, and goes on; its usage continues from
// the saved one.

/** The run's token usage from the SDK's state; undefined when the model reported none. */
export function usageOf(state: {
  usage?: { requests: number; inputTokens: number; outputTokens: number; totalTokens: number };
}): RunUsage | undefined {
  const u = state.usage;
  if (!u) return undefined;
  const clean = (n: number) => (Number.isSafeInteger(n) && n >= 0 ? n : 0);
  const usage = {
    inputTokens: clean(u.inputTokens),
    outputTokens: clean(u.outputTokens),
    totalTokens: clean(u.totalTokens),
    requests: clean(u.requests),
  };
  if (usage.inputTokens === 0 && usage.outputTokens === 0 && usage.totalTokens === 0) return undefined;
  return usage;
}

/** The usage recorded in a serialized run state (`context.usage`), or undefined. */
function savedUsage(serialized: string): ConstructorParameters<typeof Usage>[0] {
  try {
    const parsed = JSON.parse(serialized) as { context?: { usage?: ConstructorParameters<typeof Usage>[0] } };
    return parsed.context?.usage;
  } catch {
    return undefined;
  }
}

/** The rejection text the model gets for a call the user turned down. */
function rejectionText(reason: string | undefined): string {
  return reason
    ? `The user rejected this tool call, so it did not run. Their reason: ${reason}`
    : 'The user rejected this tool call, so it did not run.';
}

/** Throws the failure of a run-state call: the abort reason when the run was aborted meanwhile. */
function stateCallFailed(signal: AbortSignal, what: string, error: { code: string; message: string }): never {
  if (signal.aborted) throw signal.reason;
  throw new AgentRunnerError('tool_client_error', `could not ${what}: ${error.code}: ${error.message}`);
}

/**
 * The saved state of the paused run that `resume` continues, with the person's decision applied: the waiting
 * call approved, or rejected (then recorded as failed in `outcomes`). It is the SDK run's input.
 */
export async function resumedState(input: {
  agent: Agent<RunContextData>;
  client: ToolClient;
  context: RunContextData;
  resume: NonNullable<RunRequest['resume']>;
  outcomes: Map<string, ToolOutcome>;
  signal: AbortSignal;
}): Promise<RunState<RunContextData, Agent<RunContextData>>> {
  const { resume } = input;
  const saved = await input.client.getRunState();
  if (!saved.ok) stateCallFailed(input.signal, 'load the paused run', saved.error);
  if (saved.data.state === null)
    throw new AgentRunnerError('tool_client_error', 'no saved state for this paused run');
  // The saved context holds no functions: this run's tool client and reporter replace it. The SDK keeps
  // the usage of a context given this way as it is, so the usage before the pause is carried over here.
  const runContext = new RunContext<RunContextData>(input.context);
  runContext.usage = new Usage(savedUsage(saved.data.state));
  const state = await RunState.fromStringWithContext<RunContextData, Agent<RunContextData>>(
    input.agent,
    saved.data.state,
    runContext,
  );
  const item = state
    .getInterruptions()
    .find((i) => (i.rawItem as { callId?: string }).callId === resume.toolCallId);
  if (!item)
    throw new AgentRunnerError(
      'tool_client_error',
      `tool call ${resume.toolCallId} does not wait for approval in this run`,
    );
  if (resume.approved) state.approve(item);
  else {
    state.reject(item, { message: rejectionText(resume.reason) });
    input.outcomes.set(resume.toolCallId, {
      ok: false,
      error: 'The user rejected this call; it did not run.',
    });
  }
  return state;
}

/**
 * Pauses the run at a call that waits for a person: saves its SDK state behind the API and returns the
 * TOOL_APPROVAL_REQUESTED that says what waits (the stream then ends without a terminal event).
 */
export async function pauseForApproval(input: {
  pending: RunToolApprovalItem;
  state: { toString(): string };
  client: ToolClient;
  ids: { threadId: string; runId: string };
  displayNames: Map<string, string>;
  approvalTtlMs: number;
  signal: AbortSignal;
}): Promise<AgentEvent> {
  const { pending } = input;
  const raw = pending.rawItem as { callId?: string; name?: string; arguments?: string };
  const saved = await input.client.putRunState(input.state.toString());
  if (!saved.ok) stateCallFailed(input.signal, 'save the paused run', saved.error);
  const name = pending.name ?? raw.name ?? 'tool';
  const args = raw.arguments ?? '{}';
  return createToolApprovalRequestedEvent({
    ...input.ids,
    toolCallId: raw.callId ?? 'unknown',
    toolName: input.displayNames.get(name) ?? name,
    args: args.length <= LIMITS.maxDeltaLength ? args : '{}',
    expiresAt: new Date(Date.now() + input.approvalTtlMs).toISOString(),
  });
}
