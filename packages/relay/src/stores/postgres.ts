import pg from 'pg';
import { StoreError } from '../errors.js';
import { toPgStoreError } from './postgres/driver.js';
import { PostgresStore } from './postgres/store.js';

export { PostgresStore } from './postgres/store.js';
export { POSTGRES_SCHEMA_VERSION } from './postgres/sql.js';
export { isPostgresUnavailable } from './postgres/driver.js';
export type { ToolStorePart } from './tool-store-part.js';

/** Options of {@link openPostgresStore}: give either `connectionString` (the store owns a pool) or `pool`. */
export type PostgresStoreOptions = (
  { connectionString: string; pool?: undefined } | { pool: pg.Pool; connectionString?: undefined }
) & {
  /** Most connections of the store's own pool (default 10, from 1 to 1000). Ignored with `pool`. */
  maxConnections?: number;
  /**
   * How long a call waits for a connection (a free one from the pool, or a new one to the server) before it
   * fails with StoreError `store_error` (default 5000 ms). This bounds the pool's wait queue in time: with
   * PostgreSQL down or every connection busy, calls fail after this long instead of piling up.
   */
  connectionTimeoutMs?: number;
  /**
   * Longest one statement may run on the server (PostgreSQL's `statement_timeout`) before it is cancelled
   * and the call fails with `store_error` (default 30000 ms). Ignored with `pool`.
   */
  statementTimeoutMs?: number;
  /** Prefix of every table (and the one function) the store creates, so it can share a schema. Default `threadline_`. */
  tablePrefix?: string;
  /**
   * Runs the two hot writes (appending events, starting runs) as named prepared statements, parsed and planned
   * once per connection instead of on every call (default true). Set false behind a connection pooler that
   * cannot keep prepared statements across transactions (PgBouncer in transaction mode before 1.21).
   */
  preparedStatements?: boolean;
};

const DEFAULT_MAX_CONNECTIONS = 10;
const DEFAULT_CONNECTION_TIMEOUT_MS = 5_000;
const DEFAULT_STATEMENT_TIMEOUT_MS = 30_000;
/**
 * Connects to PostgreSQL and creates or migrates the store's tables. Throws StoreError `invalid_message` for
 * bad options and `store_error` when the server can't be reached (within `connectionTimeoutMs`).
 *
 * @example
 * import { openPostgresStore } from '@threadline/relay/postgres';
 * const store = await openPostgresStore({ connectionString: 'postgres://app@127.0.0.1/app', maxConnections: 20 });
 * const relay = createRelay({ store, agent, tokens, toolsBaseUrl, tools });
 */
export async function openPostgresStore(options: PostgresStoreOptions): Promise<PostgresStore> {
  if (typeof options !== 'object' || options === null)
    throw new StoreError('invalid_options', 'openPostgresStore needs options');
  const hasUrl = typeof options.connectionString === 'string' && options.connectionString !== '';
  const hasPool = options.pool instanceof pg.Pool;
  if (hasUrl === hasPool)
    throw new StoreError(
      'invalid_options',
      'openPostgresStore needs exactly one of `connectionString` or `pool`',
    );
  const prefix = options.tablePrefix ?? 'threadline_';
  if (typeof prefix !== 'string' || !/^[a-z_][a-z0-9_]{0,31}$/.test(prefix)) {
    throw new StoreError(
      'invalid_options',
      'tablePrefix must start with a lowercase letter or _ and hold only lowercase letters, digits and _ (at most 32)',
    );
  }
  if (options.preparedStatements !== undefined && typeof options.preparedStatements !== 'boolean')
    throw new StoreError('invalid_options', 'preparedStatements must be a boolean');
  const max = integerOption('maxConnections', options.maxConnections, DEFAULT_MAX_CONNECTIONS, 1, 1000);
  const connectTimeout = integerOption(
    'connectionTimeoutMs',
    options.connectionTimeoutMs,
    DEFAULT_CONNECTION_TIMEOUT_MS,
    1,
    600_000,
  );
  const statementTimeout = integerOption(
    'statementTimeoutMs',
    options.statementTimeoutMs,
    DEFAULT_STATEMENT_TIMEOUT_MS,
    1,
    3_600_000,
  );
  const pool = hasPool
    ? options.pool!
    : new pg.Pool({
        connectionString: options.connectionString!,
        max,
        connectionTimeoutMillis: connectTimeout,
        statement_timeout: statementTimeout,
        // A query the server never answers (a dead network) fails too, a little after the server-side bound.
        query_timeout: statementTimeout + connectTimeout,
        idleTimeoutMillis: 30_000,
        keepAlive: true,
        application_name: 'threadline-relay',
      });
  // An idle connection that dies (the server restarted) is reported here; the pool drops it and the next call
  // connects anew. Without a listener the error would crash the process.
  if (!hasPool) pool.on('error', () => {});
  const store = new PostgresStore({
    pool,
    ownsPool: !hasPool,
    tablePrefix: prefix,
    preparedStatements: options.preparedStatements !== false,
  });
  try {
    await store.migrate();
    return store;
  } catch (error) {
    if (!hasPool) await pool.end().catch(() => undefined);
    throw toPgStoreError(error, 'opening the PostgreSQL store');
  }
}

function integerOption(name: string, value: unknown, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max)
    throw new StoreError('invalid_options', `${name} must be an integer from ${min} to ${max}`);
  return value;
}
