/** Codes of {@link RelayError}. Browser-facing codes match `BROWSER_ERROR_CODES` in @threadline/contracts. */
export const RELAY_ERROR_CODES = [
  'invalid_message',
  'unauthorized',
  'forbidden',
  'not_found',
  'conflict',
  'run_active',
  /** A `send` to a thread whose run waits for a tool approval. */
  'run_awaiting_approval',
  /** An `approve` for a run or tool call that does not wait for a decision. */
  'approval_not_pending',
  /** An `approve` that differs from the decision already made on that call. */
  'approval_already_decided',
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

// `instanceof` across copies of this package's classes: its ESM and CommonJS builds loaded in one process, or
// two installed copies. Instances carry a registry-wide brand; a subclass is matched by name along the chain.
const BRAND = Symbol.for('@threadline/relay/RelayError');

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
    return isBranded(this, value);
  }
}

/** A storage adapter failed or refused (e.g. a duplicate thread id → code `conflict`). */
export class StoreError extends RelayError {}
