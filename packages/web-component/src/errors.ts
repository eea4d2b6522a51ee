import { isBrandedInstance } from '@threadline/contracts/core';

/** Codes of {@link AgentChatError}: what went wrong on the element's side (server codes are separate). */
export const AGENT_CHAT_ERROR_CODES = [
  'not_connected',
  'run_active',
  'no_active_run',
  'readonly',
  'invalid_message',
  'invalid_frame',
  'frame_backlog',
  'reconnect_exhausted',
  'transport_error',
] as const;

/** One of {@link AGENT_CHAT_ERROR_CODES}. */
export type AgentChatErrorCode = (typeof AGENT_CHAT_ERROR_CODES)[number];

// `instanceof` across copies of this package (ESM and CommonJS builds, two installed versions): see isBrandedInstance.
const BRAND = Symbol.for('@threadline/web-component/AgentChatError');

/**
 * The one error class of this package. `code` says what went wrong; the message says what to do.
 *
 * @example
 * try { chat.send('hi'); } catch (err) { if (err instanceof AgentChatError && err.code === 'run_active') wait(); }
 */
export class AgentChatError extends Error {
  static {
    // Minifiers rename classes; pin the name so `new.target.name` stays readable in the script-tag bundle.
    Object.defineProperty(this, 'name', { value: 'AgentChatError' });
    Object.defineProperty(this.prototype, BRAND, { value: true });
  }

  /** Machine-readable reason. */
  readonly code: AgentChatErrorCode;

  constructor(code: AgentChatErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }

  /** True for errors of this class from any copy of this package (ESM or CommonJS build), not only this one. */
  static override [Symbol.hasInstance](value: unknown): boolean {
    return isBrandedInstance(this, value, BRAND);
  }
}
