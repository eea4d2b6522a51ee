import { createHash } from 'node:crypto';
import { ID_PATTERN, LIMITS } from '@threadline/contracts';
import type pg from 'pg';
import { StoreError } from '../../errors.js';
import { notFoundThread, toStoreError } from '../store-input.js';
import { THREAD_MISSING } from './sql.js';

// How the PostgreSQL store talks to the pool: queries and transactions, with driver failures mapped to StoreError.

/** Driver error codes (Node's and PostgreSQL's) that mean the server is unreachable or went away. */
const UNAVAILABLE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EPIPE',
  '57P01', // admin_shutdown
  '57P02', // crash_shutdown
  '57P03', // cannot_connect_now (starting up, shutting down, in recovery)
  '53300', // too_many_connections
]);

/**
 * True when a node-postgres failure means the server cannot be reached or went away (refused, reset or timed-out
 * connections, a server shutting down or starting, too many connections, a pool that could not connect), as
 * opposed to a failed statement. Code that shares the store's pool can use it to answer "unavailable".
 */
export function isPostgresUnavailable(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  const { code, message } = error as { code?: unknown; message?: unknown };
  if (typeof code === 'string' && (UNAVAILABLE_CODES.has(code) || code.startsWith('08'))) return true;
  if (typeof message !== 'string') return false;
  // node-postgres reports these without a code.
  return (
    message.includes('Connection terminated') ||
    message.includes('timeout exceeded when trying to connect') ||
    message.includes('Client has encountered a connection error') ||
    message.includes('Connection closed')
  );
}

/** Maps a driver failure to a StoreError: `not_found` from our SQLSTATE, a clear "unavailable" `store_error`, or `store_error`. */
export function toPgStoreError(error: unknown, doing: string): StoreError {
  if (error instanceof StoreError) return error;
  const e = error as { code?: unknown; detail?: unknown; message?: unknown } | null;
  if (e?.code === THREAD_MISSING) return notFoundThread(String(e.detail ?? ''));
  if (isPostgresUnavailable(error)) {
    const why = typeof e?.message === 'string' && e.message !== '' ? e.message : String(e?.code ?? error);
    return new StoreError('store_error', `PostgreSQL is unavailable (${why}) while ${doing}; try again`, {
      cause: error,
    });
  }
  return toStoreError(error, doing);
}

/** The stored form of an idempotency key (keys may be longer than an index entry). */
export function idempotencyHash(key: string): Buffer {
  // JSON text: lone surrogates come out escaped, so two different keys never hash the same input.
  return createHash('sha256').update(JSON.stringify(key)).digest();
}

/** A contract id: anything else was never stored, so lookups answer "none" without asking (and without sending PostgreSQL a NUL it would refuse). */
export function isId(value: unknown): value is string {
  return typeof value === 'string' && value.length <= LIMITS.maxIdLength && ID_PATTERN.test(value);
}

/**
 * A statement with array rows, optionally named: a named statement is parsed and planned once per connection
 * (a prepared statement) instead of on every call.
 */
export interface PgQuery {
  text: string;
  rowMode: 'array';
  name?: string | undefined;
}

/** Runs statements on a pool: one statement, or a transaction on one pooled connection. */
export class PgRunner {
  readonly #pool: pg.Pool;

  constructor(pool: pg.Pool) {
    this.#pool = pool;
  }

  /** One statement on any pooled connection; failures become StoreErrors naming what was being done. */
  async query<R extends pg.QueryResultRow = pg.QueryResultRow>(
    doing: string,
    query: string | PgQuery,
    values: unknown[],
  ): Promise<pg.QueryResult<R>> {
    try {
      // Array rows (`rowMode: 'array'`) for the hot reads: no object per row; R describes the tuple then.
      return (await this.#pool.query(query as pg.QueryConfig, values)) as pg.QueryResult<R>;
    } catch (error) {
      throw toPgStoreError(error, doing);
    }
  }

  /**
   * Like {@link query}, but a failure whose SQLSTATE is in `refused` answers null (the statement wrote nothing)
   * instead of throwing.
   */
  async queryUnless<R extends pg.QueryResultRow = pg.QueryResultRow>(
    doing: string,
    query: PgQuery,
    values: unknown[],
    refused: readonly string[],
  ): Promise<pg.QueryResult<R> | null> {
    try {
      return (await this.#pool.query(query as pg.QueryConfig, values)) as pg.QueryResult<R>;
    } catch (error) {
      const code = (error as { code?: unknown } | null)?.code;
      if (typeof code === 'string' && refused.includes(code)) return null;
      throw toPgStoreError(error, doing);
    }
  }

  /** Runs `fn` in BEGIN … COMMIT on one pooled connection; any failure rolls back (nothing half-written). */
  async transaction<T>(doing: string, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    let client: pg.PoolClient;
    try {
      client = await this.#pool.connect();
    } catch (error) {
      throw toPgStoreError(error, doing);
    }
    let broken: unknown;
    try {
      await client.query('BEGIN');
      const result = await fn(client);
      await client.query('COMMIT');
      return result;
    } catch (error) {
      try {
        await client.query('ROLLBACK');
      } catch (rollbackError) {
        broken = rollbackError; // the connection is gone: the server rolls back for us
      }
      throw toPgStoreError(error, doing);
    } finally {
      // A connection that failed its rollback is destroyed, not reused.
      client.release(broken === undefined ? undefined : (broken as Error));
    }
  }
}
