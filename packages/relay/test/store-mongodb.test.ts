import { createServer } from 'node:net';
import { MongoClient } from 'mongodb';
import { runToolStoreConformance } from '@threadline/tools-kit/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openMongoStore, type MongoStore } from '../src/stores/mongodb.js';
import { runStoreConformance } from '../src/testing.js';

const uri = process.env['MONGODB_URI'];
const dbName = `threadline_test_${process.pid}_${Date.now().toString(36)}`;

if (uri) {
  let client: MongoClient;
  beforeAll(async () => {
    client = new MongoClient(uri, { serverSelectionTimeoutMS: 5000 });
    await client.connect();
  });
  afterAll(async () => {
    await client?.db(dbName).dropDatabase();
    await client?.close();
  });

  // Every test uses ids of its own, so all stores share one database; the client outlives each store.
  runStoreConformance('mongodb', async () => ({ store: await openMongoStore({ client, dbName }) }));
  // The same store is tools-kit's ToolStore.
  runToolStoreConformance(
    'mongodb',
    async () => {
      const store = await openMongoStore({ client, dbName });
      return { store, cleanup: () => store.close() };
    },
    { invalidInput: { name: 'StoreError', code: 'invalid_message' } },
  );

  describe('MongoStore on a real server', () => {
    it('never duplicates or skips a seq when two clients append to one thread at once', async () => {
      const a = await openMongoStore({ uri, dbName });
      const b = await openMongoStore({ uri, dbName });
      try {
        const threadId = `shared-${Date.now().toString(36)}`;
        await a.createThread({ threadId, ownerId: 'u1' });
        const ts = Date.now();
        const appendMany = (store: MongoStore, name: string) =>
          Promise.all(
            Array.from({ length: 30 }, (_, i) =>
              store.append(threadId, [
                {
                  type: 'TEXT_MESSAGE_CHUNK',
                  threadId,
                  runId: 'r1',
                  ts,
                  messageId: 'm',
                  delta: `${name}${i}`,
                },
              ]),
            ),
          );
        const results = (await Promise.all([appendMany(a, 'a'), appendMany(b, 'b')])).flat(2);
        const seqs = results.map((e) => e.seq).sort((x, y) => x - y);
        if (a.transactions) {
          expect(seqs).toEqual(Array.from({ length: 60 }, (_, i) => i + 1));
        } else {
          // Standalone server: uniqueness always holds; see MongoStore's docs for what transactions add.
          expect(new Set(seqs).size).toBe(60);
        }
        expect((await a.read(threadId, { afterSeq: 0, limit: 100 })).map((e) => e.seq)).toEqual(seqs);
      } finally {
        await a.close();
        await b.close();
      }
    });
  });
} else {
  // No MongoDB server can be installed on the machines this suite was written on (not packaged for Debian;
  // the npm packages that provide one download it at run time). Set MONGODB_URI to a server to run the
  // MongoDB conformance suite, e.g. MONGODB_URI=mongodb://127.0.0.1:27017/?replicaSet=rs0.
  const reason = 'MongoDB conformance skipped: MONGODB_URI is not set (no MongoDB server is available here)';
  console.warn(reason);
  it.skip(reason, () => {});
}

describe('openMongoStore without a server', () => {
  it('fails with StoreError store_error within the server selection timeout when nothing listens', async () => {
    // A port that was just free: nothing is listening on it.
    const port = await new Promise<number>((resolve) => {
      const server = createServer();
      server.listen(0, '127.0.0.1', () => {
        const address = server.address();
        server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
      });
    });
    const started = Date.now();
    const error = await openMongoStore({
      uri: `mongodb://127.0.0.1:${port}/`,
      dbName: 'threadline',
      clientOptions: { serverSelectionTimeoutMS: 300, connectTimeoutMS: 300 },
    }).catch((e: unknown) => e);
    expect(error).toMatchObject({ name: 'StoreError', code: 'store_error' });
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('refuses bad options with invalid_options before connecting', async () => {
    const bad = [
      { dbName: 'x' },
      { uri: 'mongodb://127.0.0.1:1/', dbName: 'bad/name' },
      { uri: 'mongodb://127.0.0.1:1/', dbName: 'x', collectionPrefix: 'no-dashes' },
      { uri: 'mongodb://127.0.0.1:1/', dbName: 'x', transactions: 'sometimes' },
      { uri: 'mongodb://127.0.0.1:1/', client: new MongoClient('mongodb://127.0.0.1:1/'), dbName: 'x' },
    ];
    for (const options of bad) {
      const error = await openMongoStore(options as unknown as Parameters<typeof openMongoStore>[0]).catch(
        (e: unknown) => e,
      );
      expect(error).toMatchObject({ name: 'StoreError', code: 'invalid_options' });
    }
  });
});
