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

// `instanceof` across copies of this package's classes: its ESM and CommonJS builds loaded in one process, or
// two installed copies. Instances carry a registry-wide brand; a subclass is matched by name along the chain.
const BRAND = Symbol.for('@threadline/agent-runner/AgentRunnerError');

function isBranded(cls: abstract new (...args: never[]) => unknown, value: unknown): boolean {
  if (typeof value !== 'object' || value === null) return false;
  if (Function.prototype[Symbol.hasInstance].call(cls, value)) return true;
  if ((value as { [BRAND]?: unknown })[BRAND] !== true) return false;
  for (let p: unknown = Object.getPrototypeOf(value); p !== null; p = Object.getPrototypeOf(p)) {
    const ctor = Object.hasOwn(p as object, 'constructor')
      ? (p as { constructor: unknown }).constructor
      : undefined;
    if (typeof ctor === 'function' && ctor.name === cls.name) return true;
  }
  return false;
}

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
    return isBranded(this, value);
  }
}
