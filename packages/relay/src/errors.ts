/** Codes of {@link RelayError}. Browser-facing codes match `BROWSER_ERROR_CODES` in @threadline/contracts. */
export const RELAY_ERROR_CODES = [
  'invalid_message',
  'unauthorized',
  'forbidden',
  'not_found',
  'conflict',
  'run_active',
  'queue_full',
  'slow_consumer',
  'too_many_subscribers',
  'too_many_runs',
  /** A per-user share is spent (runs per minute, or a host's budget such as message bytes per hour). */
  'rate_limited',
  'store_error',
  'pubsub_unavailable',
  'agent_unavailable',
  'closed',
  'invalid_options',
  'internal_error',
] as const;
export type RelayErrorCode = (typeof RELAY_ERROR_CODES)[number];

/** The one error base of @threadline/relay: a string `code` a program can switch on, and a sentence for people. */
export class RelayError extends Error {
  readonly code: RelayErrorCode;
  /** On refusals that end on their own (`rate_limited`): how long to wait before trying again, in ms. */
  readonly retryAfterMs: number | undefined;
  constructor(code: RelayErrorCode, message: string, options?: { cause?: unknown; retryAfterMs?: number }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.retryAfterMs = options?.retryAfterMs;
  }
}

/** A storage adapter failed or refused (e.g. a duplicate thread id → code `conflict`). */
export class StoreError extends RelayError {}
