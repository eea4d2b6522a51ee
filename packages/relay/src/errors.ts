import { isBrandedInstance, RUN_REFUSAL_CODES } from '@threadline/contracts';

/** Codes of {@link RelayError}. Browser-facing codes match `BROWSER_ERROR_CODES` in @threadline/contracts. */
export const RELAY_ERROR_CODES = [
  'invalid_message',
  'unauthorized',
  'not_found',
  'conflict',
  /** The thread's run refuses it (`run_active`, `run_awaiting_approval`, …): see RUN_REFUSAL_CODES. */
  ...RUN_REFUSAL_CODES,
  'queue_full',
  'slow_consumer',
  'too_many_subscribers',
  'too_many_runs',
  /** A per-user share is spent (runs per minute, or a host's budget such as message bytes per hour). */
  'rate_limited',
  'store_error',
  /** The thread was deleted: its subscriptions end with this. */
  'thread_deleted',
  'pubsub_unavailable',
  'agent_unavailable',
  'closed',
  'invalid_options',
  'internal_error',
] as const;
export type RelayErrorCode = (typeof RELAY_ERROR_CODES)[number];

// `instanceof` across copies of this package (ESM and CommonJS builds, two installed versions): see isBrandedInstance.
const BRAND = Symbol.for('@threadline/relay/RelayError');

/** The one error base of @threadline/relay: a string `code` a program can switch on, and a sentence for people. */
export class RelayError extends Error {
  static {
    Object.defineProperty(this.prototype, BRAND, { value: true });
  }

  readonly code: RelayErrorCode;
  /** On refusals that end on their own (`rate_limited`): how long to wait before trying again, in ms. */
  readonly retryAfterMs: number | undefined;
  constructor(code: RelayErrorCode, message: string, options?: { cause?: unknown; retryAfterMs?: number }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.retryAfterMs = options?.retryAfterMs;
  }

  /** True for errors of this class from any copy of this package (ESM or CommonJS build), not only this one. */
  static override [Symbol.hasInstance](value: unknown): boolean {
    return isBrandedInstance(this, value, BRAND);
  }
}

/** A storage adapter failed or refused (e.g. a duplicate thread id → code `conflict`). */
export class StoreError extends RelayError {}
