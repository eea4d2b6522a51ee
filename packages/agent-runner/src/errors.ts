import { isBrandedInstance } from '@threadline/contracts';

/** Codes of {@link AgentRunnerError}. */
export const AGENT_RUNNER_ERROR_CODES = [
  'tool_client_error',
  'invalid_options',
  'invalid_request',
  'unauthorized',
  'fake_server_error',
  'aborted',
  'cancelled',
  'shutdown',
] as const;
export type AgentRunnerErrorCode = (typeof AGENT_RUNNER_ERROR_CODES)[number];

// `instanceof` across copies of this package (ESM and CommonJS builds, two installed versions): see isBrandedInstance.
const BRAND = Symbol.for('@threadline/agent-runner/AgentRunnerError');

/**
 * The one error class of @threadline/agent-runner. `code` says what went wrong; `cause` keeps the original.
 *
 * @example
 * if (error instanceof AgentRunnerError && error.code === 'tool_client_error') retryLater();
 */
export class AgentRunnerError extends Error {
  static {
    Object.defineProperty(this.prototype, BRAND, { value: true });
  }

  readonly code: AgentRunnerErrorCode;
  constructor(code: AgentRunnerErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }

  /** True for errors of this class from any copy of this package (ESM or CommonJS build), not only this one. */
  static override [Symbol.hasInstance](value: unknown): boolean {
    return isBrandedInstance(this, value, BRAND);
  }
}
