/** Codes of {@link HostError}. Each one maps to one HTTP status in {@link HOST_ERROR_STATUS}. */
export const HOST_ERROR_STATUS = {
  invalid_config: 500,
  invalid_input: 400,
  invalid_json: 400,
  password_too_common: 400,
  unsupported_media_type: 415,
  payload_too_large: 413,
  unauthorized: 401,
  invalid_credentials: 401,
  forbidden: 403,
  cross_origin: 403,
  too_many_threads: 403,
  not_found: 404,
  username_taken: 409,
  rate_limited: 429,
  store_error: 503,
  internal_error: 500,
} as const;
export type HostErrorCode = keyof typeof HOST_ERROR_STATUS;
export const HOST_ERROR_CODES = Object.keys(HOST_ERROR_STATUS) as HostErrorCode[];

/** One problem with an input field, as sent to clients. */
export interface HostIssue {
  path: string;
  message: string;
}

/**
 * The one error class of the reference host: a string `code` a client can switch on, a sentence a person can
 * act on, and (for input errors) the field-level `issues`.
 */
export class HostError extends Error {
  readonly code: HostErrorCode;
  readonly issues: HostIssue[] | undefined;
  /** When to try again, sent as `Retry-After` (rate limits and quotas). */
  readonly retryAfterSeconds: number | undefined;
  constructor(
    code: HostErrorCode,
    message: string,
    options?: { cause?: unknown; issues?: HostIssue[]; retryAfterSeconds?: number },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.issues = options?.issues;
    this.retryAfterSeconds = options?.retryAfterSeconds;
  }

  /** The HTTP status this error travels with. */
  get status(): number {
    return HOST_ERROR_STATUS[this.code];
  }
}
