import { MongoClient, type MongoClientOptions } from 'mongodb';
import { StoreError } from '../errors.js';
import { MongoStore } from './mongodb/store.js';
import { toStoreError } from './store-input.js';

export { MongoStore } from './mongodb/store.js';
export type { ToolStorePart } from './tool-store-part.js';

/** Options of {@link openMongoStore}: give either `uri` (the store owns and closes the client) or `client`. */
export type MongoStoreOptions = (
  | { uri: string; client?: undefined; clientOptions?: MongoClientOptions }
  | { client: MongoClient; uri?: undefined; clientOptions?: undefined }
) & {
  /** Database name. */
  dbName: string;
  /** Prefix of every collection name, so the store can share a database with the host. Default `threadline_`. */
  collectionPrefix?: string;
  /**
   * Whether writes run in multi-document transactions. `'auto'` (default) uses them when the deployment
   * supports them (a replica set, even of one node, or a sharded cluster) and falls back on a standalone
   * server; `'required'` refuses to open without them; `'off'` never uses them. See {@link MongoStore}.
   */
  transactions?: 'auto' | 'required' | 'off';
  /** Bounded retries of an optimistic profile update under contention. Default 50. */
  maxProfileRetries?: number;
};

/**
 * Connects to MongoDB, checks whether it supports transactions and creates the store's indexes. Throws
 * StoreError `store_error` if the server can't be reached (after the driver's server selection timeout,
 * 10 s by default here) and `invalid_message` for bad options.
 *
 * @example
 * import { openMongoStore } from '@threadline/relay/mongodb';
 * const store = await openMongoStore({ uri: 'mongodb://127.0.0.1:27017/?replicaSet=rs0', dbName: 'threadline' });
 * const relay = createRelay({ store, agent, tokens, toolsBaseUrl, tools });
 */
export async function openMongoStore(options: MongoStoreOptions): Promise<MongoStore> {
  if (typeof options !== 'object' || options === null)
    throw new StoreError('invalid_options', 'openMongoStore needs options');
  const hasUri = typeof options.uri === 'string' && options.uri !== '';
  const hasClient = options.client instanceof MongoClient;
  if (hasUri === hasClient)
    throw new StoreError('invalid_options', 'openMongoStore needs exactly one of `uri` or `client`');
  if (typeof options.dbName !== 'string' || !/^[^/\\. "$*<>:|?]{1,63}$/.test(options.dbName)) {
    throw new StoreError('invalid_options', 'dbName must be a valid MongoDB database name');
  }
  const prefix = options.collectionPrefix ?? 'threadline_';
  if (typeof prefix !== 'string' || !/^[A-Za-z0-9_]{0,32}$/.test(prefix)) {
    throw new StoreError(
      'invalid_options',
      'collectionPrefix may contain only letters, digits and _ (at most 32)',
    );
  }
  const mode = options.transactions ?? 'auto';
  if (mode !== 'auto' && mode !== 'required' && mode !== 'off') {
    throw new StoreError('invalid_options', "transactions must be 'auto', 'required' or 'off'");
  }
  const maxProfileRetries = options.maxProfileRetries ?? 50;
  if (!Number.isSafeInteger(maxProfileRetries) || maxProfileRetries < 1) {
    throw new StoreError('invalid_options', 'maxProfileRetries must be a positive integer');
  }
  const client = hasClient
    ? (options.client as MongoClient)
    : new MongoClient(options.uri as string, { serverSelectionTimeoutMS: 10_000, ...options.clientOptions });
  try {
    if (!hasClient) await client.connect();
    const db = client.db(options.dbName);
    const hello = await db.admin().command({ hello: 1 });
    const supported = typeof hello['setName'] === 'string' || hello['msg'] === 'isdbgrid';
    if (mode === 'required' && !supported) {
      throw new StoreError(
        'store_error',
        'this MongoDB deployment has no transactions (a standalone server); run it as a replica set or use transactions: "auto"',
      );
    }
    const store = new MongoStore({
      client,
      ownsClient: !hasClient,
      db,
      prefix,
      transactions: mode !== 'off' && supported,
      maxProfileRetries,
    });
    await store.ensureIndexes();
    return store;
  } catch (error) {
    if (!hasClient) await client.close().catch(() => undefined);
    throw toStoreError(error, `opening the MongoDB store (database "${options.dbName}")`);
  }
}
