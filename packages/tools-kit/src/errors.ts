import type { ToolErrorCode, ToolIssue } from '@threadline/contracts';
import { isBrandedInstance } from '@threadline/contracts';

/** Codes of {@link ToolsKitError}. */
export const TOOLS_KIT_ERROR_CODES = [
  'invalid_options',
  'invalid_tool',
  'duplicate_tool',
  'invalid_token_request',
  'token_invalid',
  'token_expired',
  'invalid_value',
  'invalid_event',
  'limit_exceeded',
  'tool_call_failed',
] as const;
/** A {@link ToolsKitError} code. */
export type ToolsKitErrorCode = (typeof TOOLS_KIT_ERROR_CODES)[number];

// `instanceof` across copies of this package (ESM and CommonJS builds, two installed versions): see isBrandedInstance.
const BRAND = Symbol.for('@threadline/tools-kit/ToolsKitError');

/**
 * The one error base class of this package. `code` says what went wrong; the message says what to do.
 * @example
 * try { await issuer.verify(token) } catch (e) { if (e instanceof ToolsKitError && e.code === 'token_expired') … }
 */
export class ToolsKitError extends Error {
  static {
    Object.defineProperty(this.prototype, BRAND, { value: true });
  }

  readonly code: ToolsKitErrorCode;
  constructor(code: ToolsKitErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }

  /** True for errors of this class from any copy of this package (ESM or CommonJS build), not only this one. */
  static override [Symbol.hasInstance](value: unknown): boolean {
    return isBrandedInstance(this, value, BRAND);
  }
}

/**
 * Thrown by a tool handler to answer with a structured failure (e.g. `conflict`, `not_found`) instead of a
 * generic 500. The router sends `errorCode` with its HTTP status from `TOOL_ERROR_STATUS`.
 * @example
 * throw new ToolFailure('conflict', 'That slot is already booked.');
 */
export class ToolFailure extends ToolsKitError {
  readonly errorCode: ToolErrorCode;
  readonly issues: ToolIssue[] | undefined;
  constructor(
    errorCode: ToolErrorCode,
    message: string,
    options?: { cause?: unknown; issues?: ToolIssue[] },
  ) {
    super('tool_call_failed', message, options);
    this.errorCode = errorCode;
    this.issues = options?.issues;
  }
}

/**
 * @deprecated use {@link ToolFailure} (the same class, so `instanceof` holds with either name); the old name
 * clashes with `@openai/agents`' `ToolCallError`. Removed in the next release.
 */
export const ToolCallError = ToolFailure;
/** @deprecated use {@link ToolFailure}. */
export type ToolCallError = ToolFailure;
