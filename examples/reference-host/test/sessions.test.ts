import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Sessions } from '../src/sessions.js';
import { SqliteUserStore } from '../src/users/sqlite-user-store.js';

// Sessions against a real SQLite user store and a real HTTP server whose upgrade handler holds the socket open,
// as the relay does after a successful upgrade.
describe('Sessions: sockets tied to a session', () => {
  let dir: string;
  let users: SqliteUserStore;
  let sessions: Sessions;
  let server: Server;
  let port: number;
  const clients: Socket[] = [];
  const held: Socket[] = [];

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tl-sessions-'));
    users = new SqliteUserStore(join(dir, 'users.db'));
    sessions = new Sessions(users, { ttlMs: 3_600_000, secure: false });
    await users.createUser({ id: 'usr_1', username: 'ada', passwordHash: 'x', createdAt: 1 });
    server = createServer();
    server.on('upgrade', (req, socket) => {
      held.push(socket as Socket);
      void sessions.userOfUpgrade(req).then((user) => {
        if (!user) socket.end('HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n');
        else
          socket.write(
            'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n',
          );
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });

  afterEach(async () => {
    for (const c of [...clients.splice(0), ...held.splice(0)]) c.destroy();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await users.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function session(expiresInMs: number): Promise<string> {
    const id = randomBytes(32).toString('base64url');
    const now = Date.now();
    await users.createSession({
      idHash: createHash('sha256').update(id).digest('base64url'),
      userId: 'usr_1',
      createdAt: now,
      expiresAt: now + expiresInMs,
    });
    return `tl_session=${id}`;
  }

  /** Opens an upgrade with `cookie`; resolves with the status line and a promise of the socket's end. */
  function upgrade(cookie: string): Promise<{ status: string; ended: Promise<void> }> {
    return new Promise((resolve, reject) => {
      const s = connect(port, '127.0.0.1');
      clients.push(s);
      const ended = new Promise<void>((done) => s.once('close', () => done()));
      s.once('error', reject);
      s.once('data', (d) => resolve({ status: String(d).split('\r\n')[0] ?? '', ended }));
      s.write(
        `GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nCookie: ${cookie}\r\n\r\n`,
      );
    });
  }

  it('closes a socket when its session expires', async () => {
    // Measured from before the session exists, so a slow upgrade on a busy machine cannot eat the margin:
    // the socket must not close before the session's expiry.
    const created = Date.now();
    const cookie = await session(300);
    const { status, ended } = await upgrade(cookie);
    expect(status).toBe('HTTP/1.1 101 Switching Protocols');
    await ended;
    expect(Date.now() - created).toBeGreaterThanOrEqual(300);
    expect((await upgrade(cookie)).status).toBe('HTTP/1.1 401 Unauthorized');
  });

  it('keeps a socket open while its session lives', async () => {
    const cookie = await session(60_000);
    const { status, ended } = await upgrade(cookie);
    expect(status).toBe('HTTP/1.1 101 Switching Protocols');
    // Still open after the expiry test's whole window.
    const outcome = await Promise.race([
      ended.then(() => 'closed'),
      new Promise((r) => setTimeout(r, 500, 'open')),
    ]);
    expect(outcome).toBe('open');
  });
});
