import { AgentsError, MaxTurnsExceededError, UserError } from '@openai/agents';
import OpenAI from 'openai';
import { LIMITS, type RunErrorCode } from '@threadline/contracts';
import { AgentRunnerError } from './errors.js';

// How a run's failure becomes its RUN_ERROR: a code from the contract and a message safe to show.

/** How deep a `cause` chain is searched for a known error (SDK and client errors wrap each other a few levels). */
const MAX_CAUSE_DEPTH = 6;

/** Makes an abort reason that a runner turns into RUN_ERROR with this code. */
export function abortReason(code: 'aborted' | 'cancelled' | 'shutdown', message: string): AgentRunnerError {
  return new AgentRunnerError(code, message);
}

function findInChain<T>(error: unknown, test: (e: unknown) => e is T): T | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < MAX_CAUSE_DEPTH && current; depth++) {
    if (test(current)) return current;
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}

/** Maps a failure to a RUN_ERROR code and a message safe to show. */
export function classifyFailure(error: unknown): { code: RunErrorCode; message: string } {
  const own = findInChain(error, (e): e is AgentRunnerError => e instanceof AgentRunnerError);
  if (own?.code === 'tool_client_error') return { code: 'tool_client_error', message: own.message };
  if (findInChain(error, (e): e is MaxTurnsExceededError => e instanceof MaxTurnsExceededError)) {
    return {
      code: 'max_turns_exceeded',
      message: 'The agent reached its maximum number of turns without finishing.',
    };
  }
  const message = error instanceof Error ? error.message : String(error);
  if (findInChain(error, (e): e is InstanceType<typeof OpenAI.APIError> => e instanceof OpenAI.APIError)) {
    return { code: 'model_error', message: `The model request failed: ${message}` };
  }
  if (error instanceof AgentsError && !(error instanceof UserError)) {
    return { code: 'model_error', message: `The model failed: ${message}` };
  }
  return { code: 'internal_error', message: `The agent failed: ${message}` };
}

/** The RUN_ERROR code and message of an aborted run: the {@link abortReason} given, else `aborted`. */
export function abortFailure(signal: AbortSignal): { code: RunErrorCode; message: string } {
  const reason: unknown = signal.reason;
  if (
    reason instanceof AgentRunnerError &&
    (reason.code === 'cancelled' || reason.code === 'shutdown' || reason.code === 'aborted')
  ) {
    return { code: reason.code, message: reason.message };
  }
  return { code: 'aborted', message: 'The run was aborted.' };
}

/** Cuts a RUN_ERROR message to the contract's bound. */
export const clipErrorMessage = (s: string): string =>
  s.length > LIMITS.maxErrorMessageLength ? `${s.slice(0, LIMITS.maxErrorMessageLength - 1)}…` : s;
