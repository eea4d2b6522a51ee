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
  }

  /** Machine-readable reason. */
  readonly code: AgentChatErrorCode;

  constructor(code: AgentChatErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}
