import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { createRelay, inProcessAgentTransport, StoreError } from '@threadline/relay';
import { createMemoryStore } from '@threadline/relay/memory';
import { MemoryToolStore } from '@threadline/tools-kit';
import { afterEach, describe, expect, it } from 'vitest';
import { createApp } from '../src/app.js';
import { EXAMPLE_ROOT } from '../src/config.js';
import { isStoreUnavailable } from '../src/errors.js';
import { allowedOrigins } from '../src/security.js';
import { Sessions } from '../src/sessions.js';
import { storeHealth, watchUserStore } from '../src/store-health.js';
import { SqliteUserStore } from '../src/users/sqlite-user-store.js';
import type { UserStore } from '../src/users/user-store.js';
import { Client } from './helpers.js';

// When the database cannot write (a full disk), the API answers 503 store_unavailable, never 500, and the
// host's store health says degraded until a write works again.

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A genuine node:sqlite "database or disk is full" error (SQLITE_FULL), from a database capped at 2 pages. */
function sqliteFullError(): Error {
  const db = new DatabaseSync(':memory:');
  try {
    db.exec('CREATE TABLE t (x BLOB); PRAGMA max_page_count = 2');
    for (;;) db.prepare('INSERT INTO t VALUES (?)').run(Buffer.alloc(4096));
  } catch (error) {
    return error as Error;
  } finally {
    db.close();
  }
}

/** A user store whose writes fail with SQLITE_FULL while `full` is set (reads still work, as on a full disk). */
function fillable(store: UserStore): { users: UserStore; state: { full: boolean } } {
  const state = { full: false };
  const writes = new Set<PropertyKey>([
    'createUser',
    'createSession',
    'deleteSession',
    'deleteExpiredSessions',
  ]);
  const users = new Proxy(store, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver) as unknown;
      if (typeof value !== 'function') return value;
      if (!writes.has(prop)) return value.bind(target);
      return async (...args: unknown[]) => {
        if (state.full) throw sqliteFullError();
        return (value as (...a: unknown[]) => Promise<unknown>).apply(target, args);
      };
    },
  });
  return { users, state };
}

/**
 * The host's Express app on 127.0.0.1 over `users`, a memory relay store and tools-kit's memory store for
 * profiles, with the host's store health.
 */
async function app(users: UserStore) {
  const watched = watchUserStore(users);
  const tools = new MemoryToolStore();
  const store = Object.assign(createMemoryStore(), {
    getProfile: (userId: string) => tools.getProfile(userId),
  });
  const relay = createRelay({
    store,
    agent: inProcessAgentTransport({ async *run() {} }),
    tokens: { issue: async () => 'token' },
    toolsBaseUrl: 'http://127.0.0.1:9',
    tools: [],
    logger: { error() {}, warn() {} },
  });
  const server: Server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  const origins = allowedOrigins(undefined, port);
  const logged: unknown[] = [];
  server.on(
    'request',
    createApp({
      users: watched.users,
      store,
      threads: relay,
      sessions: new Sessions(watched.users, { ttlMs: 3_600_000, secure: false }),
      isAllowedOrigin: (o) => origins.includes(o),
      publicDir: join(EXAMPLE_ROOT, 'public'),
      logger: { error: (...a: unknown[]) => void logged.push(a) },
    }),
  );
  cleanups.push(async () => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
    await relay.close();
    await store.close();
  });
  return {
    base: `http://127.0.0.1:${port}`,
    store,
    logged,
    health: () => storeHealth(relay, watched.state),
  };
}

const login = (c: Client, username: string) =>
  c.req('POST', '/api/auth/login', { json: { username, password: 'correct horse battery' } });

describe('a database that cannot write', () => {
  it('answers sign-in and sign-up with 503 store_unavailable, not 500, and says degraded until it writes again', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tl-full-'));
    const sqlite = new SqliteUserStore(join(dir, 'users.db'));
    cleanups.push(async () => {
      await sqlite.close();
      rmSync(dir, { recursive: true, force: true });
    });
    const { users, state } = fillable(sqlite);
    const host = await app(users);
    expect((await new Client(host.base).signup('alice')).status).toBe(201);
    expect(host.health().status).toBe('ok');

    state.full = true;
    const refused = await login(new Client(host.base), 'alice');
    expect(refused.status).toBe(503);
    expect(refused.json.error).toMatchObject({ code: 'store_unavailable' });
    expect(refused.json.error.ref).toMatch(/^[0-9a-f]{12}$/); // the cause is in the log under this ref
    expect(refused.json.error.message).not.toMatch(/sqlite|disk/i);
    const signup = await new Client(host.base).signup('bob');
    expect(signup.status).toBe(503);
    expect(signup.json.error.code).toBe('store_unavailable');
    const degraded = host.health();
    expect(degraded.status).toBe('degraded');
    expect(degraded.users).toMatchObject({
      writable: false,
      lastError: { message: 'database or disk is full' },
    });
    expect(degraded.events.writable).toBe(true);

    state.full = false;
    expect((await login(new Client(host.base), 'alice')).status).toBe(200);
    expect(host.health().status).toBe('ok');
  });

  it("answers 503 store_unavailable when the relay's store fails, and still 500 for a plain bug", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tl-full-'));
    const sqlite = new SqliteUserStore(join(dir, 'users.db'));
    cleanups.push(async () => {
      await sqlite.close();
      rmSync(dir, { recursive: true, force: true });
    });
    const host = await app(sqlite);
    const c = new Client(host.base);
    await c.signup('carol');
    const original = host.store.createThread.bind(host.store);
    host.store.createThread = async () => {
      throw new StoreError('store_error', 'store failed while creating a thread: database or disk is full');
    };
    const r = await c.req('POST', '/api/threads', { json: {} });
    expect(r.status).toBe(503);
    expect(r.json.error.code).toBe('store_unavailable');
    host.store.createThread = async () => {
      throw new TypeError('undefined is not a function');
    };
    expect((await c.req('POST', '/api/threads', { json: {} })).status).toBe(500);
    host.store.createThread = original;
    expect((await c.req('POST', '/api/threads', { json: {} })).status).toBe(201);
  });

  it('tells unavailable from wrong: I/O codes, disk errnos and network errors, through causes', () => {
    expect(isStoreUnavailable(sqliteFullError())).toBe(true);
    expect(isStoreUnavailable(new Error('wrapped', { cause: sqliteFullError() }))).toBe(true);
    expect(isStoreUnavailable(Object.assign(new Error('x'), { code: 'ENOSPC' }))).toBe(true);
    expect(isStoreUnavailable(Object.assign(new Error('x'), { name: 'MongoServerSelectionError' }))).toBe(
      true,
    );
    expect(isStoreUnavailable(new StoreError('store_error', 'x'))).toBe(true);
    expect(isStoreUnavailable(new StoreError('conflict', 'x'))).toBe(false);
    const constraint = Object.assign(new Error('UNIQUE constraint failed'), {
      code: 'ERR_SQLITE_ERROR',
      errcode: 2067,
    });
    expect(isStoreUnavailable(constraint)).toBe(false);
    expect(isStoreUnavailable(new TypeError('x'))).toBe(false);
    expect(isStoreUnavailable(null)).toBe(false);
  });

  it('on a real full filesystem (users.db on a 2 MiB tmpfs): 503 while full, 200 once space is freed', async (ctx) => {
    const dir = mkdtempSync(join(tmpdir(), 'tl-tmpfs-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', dir], { stdio: 'pipe' });
    } catch (error) {
      // Mounting needs root (or CAP_SYS_ADMIN) where the kernel allows it; without it the tests above cover the
      // same path with a genuine SQLITE_FULL error.
      ctx.skip(`cannot mount a tmpfs here: ${String((error as Error).message).split('\n')[0]}`);
    }
    cleanups.push(() => void execFileSync('umount', [dir], { stdio: 'pipe' }));
    const sqlite = new SqliteUserStore(join(dir, 'users.db'));
    cleanups.push(() => sqlite.close());
    const host = await app(sqlite);
    expect((await new Client(host.base).signup('dave')).status).toBe(201);

    const filler = join(dir, 'filler');
    const fd = openSync(filler, 'w');
    try {
      for (;;) writeSync(fd, Buffer.alloc(4096, 1));
    } catch (error) {
      expect((error as NodeJS.ErrnoException).code).toBe('ENOSPC');
    } finally {
      closeSync(fd);
    }
    // Sign-ins write a session each; the WAL may still have room for a few, so sign in until one is refused.
    let refused: Awaited<ReturnType<typeof login>> | undefined;
    for (let i = 0; i < 200 && !refused; i++) {
      const r = await login(new Client(host.base), 'dave');
      if (r.status !== 200) refused = r;
    }
    expect(refused?.status).toBe(503);
    expect(refused?.json.error.code).toBe('store_unavailable');
    expect(host.health().status).toBe('degraded');

    rmSync(filler);
    expect((await login(new Client(host.base), 'dave')).status).toBe(200);
    expect(host.health().status).toBe('ok');
  });
});
