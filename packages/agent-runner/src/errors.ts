/** Codes of {@link AgentRunnerError}. */
export const AGENT_RUNNER_ERROR_CODES = [
  'tool_client_error',
  'invalid_config',
  'invalid_request',
  'unauthorized',
  'server_closed',
  'fake_server_error',
  'aborted',
  'cancelled',
  'shutdown',
] as const;
export type AgentRunnerErrorCode = (typeof AGENT_RUNNER_ERROR_CODES)[number];

/**
 * The one error class of @threadline/agent-runner. `code` says what went wrong; `cause` keeps the original.
 *
 * @example
 * if (error instanceof AgentRunnerError && error.code === 'tool_client_error') retryLater();
 */
export class AgentRunnerError extends Error {
  readonly code: AgentRunnerErrorCode;
  constructor(code: AgentRunnerErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}
