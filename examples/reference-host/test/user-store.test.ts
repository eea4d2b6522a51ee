import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MongoClient } from 'mongodb';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startPostgres, type TestPostgres } from '../../../packages/relay/test/servers.js';
import { HostError } from '../src/errors.js';
import { MongoUserStore } from '../src/users/mongo-user-store.js';
import { PostgresUserStore } from '../src/users/postgres-user-store.js';
import { SqliteUserStore } from '../src/users/sqlite-user-store.js';
import type { UserStore } from '../src/users/user-store.js';

function conformance(name: string, open: () => Promise<{ store: UserStore; done(): Promise<void> }>) {
  describe(`UserStore: ${name}`, () => {
    let store: UserStore;
    let done: () => Promise<void>;
    beforeEach(async () => {
      ({ store, done } = await open());
    });
    afterEach(async () => {
      await store.close();
      await done();
    });

    const user = (id: string, username: string) => ({
      id,
      username,
      passwordHash: `hash-${id}`,
      createdAt: 1,
    });

    it('creates and finds users by id and username', async () => {
      await store.createUser(user('u1', 'ada'));
      expect(await store.getUser('u1')).toEqual(user('u1', 'ada'));
      expect(await store.findUserByUsername('ada')).toEqual(user('u1', 'ada'));
      expect(await store.findUserByUsername('bob')).toBeNull();
      expect(await store.getUser('nope')).toBeNull();
    });

    it('refuses a second user with the same username with code username_taken', async () => {
      await store.createUser(user('u1', 'ada'));
      const err = await store.createUser(user('u2', 'ada')).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(HostError);
      expect((err as HostError).code).toBe('username_taken');
      expect(await store.getUser('u2')).toBeNull();
    });

    const identity = (userId: string, subject: string, email: string | null, createdAt = 1) => ({
      issuer: 'https://issuer.example',
      subject,
      userId,
      email,
      createdAt,
    });

    it('creates a user with its identity, finds it by (issuer, subject) and by verified email', async () => {
      await store.createUserWithIdentity(user('u1', 'ada'), identity('u1', 'sub-1', 'ada@example.com'));
      expect(await store.getUser('u1')).toEqual(user('u1', 'ada'));
      expect(await store.findUserByIdentity('https://issuer.example', 'sub-1')).toEqual(user('u1', 'ada'));
      expect(await store.findUserByIdentity('https://other.example', 'sub-1')).toBeNull();
      expect(await store.findUserByVerifiedEmail('ada@example.com')).toEqual(user('u1', 'ada'));
      expect(await store.findUserByVerifiedEmail('bob@example.com')).toBeNull();
      // A second identity links to the same user; the earliest-linked user wins an email lookup.
      await store.createUser(user('u2', 'bob'));
      await store.addIdentity(identity('u2', 'sub-2', 'ada@example.com', 5));
      await store.addIdentity(identity('u1', 'sub-3', null, 6));
      expect((await store.findUserByIdentity('https://issuer.example', 'sub-3'))?.id).toBe('u1');
      expect((await store.findUserByVerifiedEmail('ada@example.com'))?.id).toBe('u1');
    });

    it('refuses an identity linked already (identity_taken) and stores neither user nor identity then', async () => {
      await store.createUserWithIdentity(user('u1', 'ada'), identity('u1', 'sub-1', 'ada@example.com'));
      const linked = await store.addIdentity(identity('u1', 'sub-1', null)).catch((e: unknown) => e);
      expect((linked as HostError).code).toBe('identity_taken');
      const again = await store
        .createUserWithIdentity(user('u2', 'bob'), identity('u2', 'sub-1', 'bob@example.com'))
        .catch((e: unknown) => e);
      expect((again as HostError).code).toBe('identity_taken');
      expect(await store.getUser('u2')).toBeNull();
      expect(await store.findUserByUsername('bob')).toBeNull();
      // A taken username stores no identity either.
      const taken = await store
        .createUserWithIdentity(user('u3', 'ada'), identity('u3', 'sub-9', 'x@example.com'))
        .catch((e: unknown) => e);
      expect((taken as HostError).code).toBe('username_taken');
      expect(await store.findUserByIdentity('https://issuer.example', 'sub-9')).toBeNull();
      expect(await store.findUserByVerifiedEmail('x@example.com')).toBeNull();
      expect(await store.getUser('u3')).toBeNull();
    });

    it('keeps sessions until they expire, and deletes them', async () => {
      await store.createUser(user('u1', 'ada'));
      await store.createSession({ idHash: 'h1', userId: 'u1', createdAt: 0, expiresAt: 1000 });
      await store.createSession({ idHash: 'h2', userId: 'u1', createdAt: 0, expiresAt: 5000 });
      expect((await store.getSession('h1', 999))?.userId).toBe('u1');
      expect(await store.getSession('h1', 1000)).toBeNull();
      expect(await store.deleteExpiredSessions(1000)).toBe(1);
      await store.deleteSession('h2');
      expect(await store.getSession('h2', 0)).toBeNull();
    });
  });
}

conformance('sqlite (real file)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tl-users-'));
  return {
    store: new SqliteUserStore(join(dir, 'users.db')),
    done: async () => rmSync(dir, { recursive: true, force: true }),
  };
});

// PostgreSQL: a throwaway server started by this test (scripts/install-servers.sh installs the binaries).
describe('UserStore: postgres (real server)', () => {
  let server: TestPostgres;
  const pools: pg.Pool[] = [];
  let n = 0;
  /** A pool on a fresh database of the test server, as the host configures one. */
  const newDatabasePool = async () => {
    const name = `tl_users_${++n}`;
    const admin = new pg.Client({ connectionString: server.url });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${name}`);
    await admin.end();
    const pool = new pg.Pool({
      connectionString: server.url.replace(/\/postgres$/, `/${name}`),
      max: 4,
      connectionTimeoutMillis: 2_000,
    });
    pool.on('error', () => {});
    pools.push(pool);
    return pool;
  };
  beforeAll(async () => {
    server = await startPostgres();
  });
  afterAll(async () => {
    await Promise.all(pools.map((p) => p.end().catch(() => {})));
    await server?.destroy();
  });

  conformance('postgres', async () => ({
    store: await PostgresUserStore.open(await newDatabasePool()),
    done: async () => {},
  }));

  it('two instances on one database share users and sessions, and open the tables at once without racing', async () => {
    const pool = await newDatabasePool();
    const other = new pg.Pool({
      connectionString: (pool.options as { connectionString: string }).connectionString,
    });
    other.on('error', () => {});
    pools.push(other);
    const [a, b] = await Promise.all([PostgresUserStore.open(pool), PostgresUserStore.open(other)]);
    await a.createUser({ id: 'u1', username: 'ada', passwordHash: 'h', createdAt: 1 });
    await a.createSession({ idHash: 's1', userId: 'u1', createdAt: 1, expiresAt: 10 });
    expect(await b.getSession('s1', 5)).toEqual({ idHash: 's1', userId: 'u1', createdAt: 1, expiresAt: 10 });
    expect((await b.findUserByUsername('ada'))?.id).toBe('u1');
    const taken = await b
      .createUser({ id: 'u2', username: 'ada', passwordHash: 'h', createdAt: 1 })
      .catch((e: unknown) => e);
    expect((taken as HostError).code).toBe('username_taken');
    await b.deleteSession('s1');
    expect(await a.getSession('s1', 5)).toBeNull();
  });

  it('answers store_unavailable while the server is down, and works again once it is back', async () => {
    const store = await PostgresUserStore.open(await newDatabasePool());
    await store.createUser({ id: 'u1', username: 'ada', passwordHash: 'h', createdAt: 1 });
    await server.stop();
    try {
      for (const call of [
        () => store.getUser('u1'),
        () => store.createSession({ idHash: 's1', userId: 'u1', createdAt: 1, expiresAt: 10 }),
        () => store.createUser({ id: 'u2', username: 'bob', passwordHash: 'h', createdAt: 1 }),
        () =>
          store.createUserWithIdentity(
            { id: 'u3', username: 'cy', passwordHash: '', createdAt: 1 },
            { issuer: 'https://i.example', subject: 's', userId: 'u3', email: null, createdAt: 1 },
          ),
        () => store.findUserByIdentity('https://i.example', 's'),
      ]) {
        const err = await call().catch((e: unknown) => e);
        expect(err).toBeInstanceOf(HostError);
        expect((err as HostError).code).toBe('store_unavailable');
        expect((err as HostError).message).toMatch(/PostgreSQL is unavailable/);
      }
    } finally {
      await server.start();
    }
    expect((await store.getUser('u1'))?.username).toBe('ada');
  });
});

// MongoDB cannot be installed on this machine; the same suite runs wherever MONGODB_URI points at a server.
const mongoUri = process.env.MONGODB_URI;
if (mongoUri) {
  const client = new MongoClient(mongoUri);
  afterAll(() => client.close());
  conformance('mongodb', async () => {
    const db = client.db(`tl_users_test_${process.pid}_${Date.now()}`);
    return { store: await MongoUserStore.open(db), done: async () => void (await db.dropDatabase()) };
  });
} else {
  // No MongoDB server can be installed on these machines; set MONGODB_URI to a server to run this suite.
  describe.skip('UserStore: mongodb (skipped: MONGODB_URI is not set)', () => {
    it('needs a MongoDB server', () => {});
  });
}
