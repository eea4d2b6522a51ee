import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MongoClient } from 'mongodb';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HostError } from '../src/errors.js';
import { MongoUserStore } from '../src/users/mongo-user-store.js';
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
