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
  identity_taken: 409,
  run_active: 409,
  rate_limited: 429,
  store_unavailable: 503,
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

/** Primary SQLite result codes of a database that cannot be used now: BUSY, LOCKED, READONLY, IOERR, FULL, CANTOPEN. */
const SQLITE_UNAVAILABLE = new Set([5, 6, 8, 10, 13, 14]);
/** System errors of a disk that cannot take a write. */
const ERRNO_UNAVAILABLE = new Set(['ENOSPC', 'EDQUOT', 'EIO', 'EROFS']);
/** MongoDB driver errors of a server that cannot be reached or answered. */
const MONGO_UNAVAILABLE =
  /^Mongo(Network|NetworkTimeout|ServerSelection|TopologyClosed|NotConnected|ServerClosed)Error$/;

/**
 * True when `error` (or an error in its `cause` chain) says the database cannot be used right now (a full disk,
 * an I/O error, a lock held too long, an unreachable server) rather than that the request or the code is wrong:
 * the relay's `StoreError` `store_error`, a node:sqlite error with such a result code, a disk errno, a MongoDB
 * network error.
 */
export function isStoreUnavailable(error: unknown): boolean {
  for (let e = error, depth = 0; e !== null && typeof e === 'object' && depth < 8; depth++) {
    const { name, code, errcode, cause } = e as {
      name?: unknown;
      code?: unknown;
      errcode?: unknown;
      cause?: unknown;
    };
    if (name === 'StoreError' && (code === 'store_error' || code === 'closed')) return true;
    if (code === 'ERR_SQLITE_ERROR' && typeof errcode === 'number' && SQLITE_UNAVAILABLE.has(errcode & 0xff))
      return true;
    if (typeof code === 'string' && ERRNO_UNAVAILABLE.has(code)) return true;
    if (typeof name === 'string' && MONGO_UNAVAILABLE.test(name)) return true;
    e = cause;
  }
  return false;
}
