import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { HostError } from '../errors.js';
import type { SessionRecord, UserRecord, UserStore } from './user-store.js';

interface UserRow {
  id: string;
  username: string;
  password_hash: string;
  created_at: number;
}
interface SessionRow {
  id_hash: string;
  user_id: string;
  created_at: number;
  expires_at: number;
}

const toUser = (r: UserRow): UserRecord => ({
  id: r.id,
  username: r.username,
  passwordHash: r.password_hash,
  createdAt: r.created_at,
});

/** Users and sessions in a SQLite file (node:sqlite), next to the relay's own database in DATA_DIR. */
export class SqliteUserStore implements UserStore {
  readonly #db: DatabaseSync;

  constructor(path: string) {
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
    this.#db = new DatabaseSync(path);
    this.#db.exec(`
      PRAGMA journal_mode = WAL;
      PRAGMA busy_timeout = 5000;
      CREATE TABLE IF NOT EXISTS users (
        id TEXT PRIMARY KEY,
        username TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,
        created_at INTEGER NOT NULL
      );
      CREATE TABLE IF NOT EXISTS sessions (
        id_hash TEXT PRIMARY KEY,
        user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
      );
      CREATE INDEX IF NOT EXISTS sessions_expires ON sessions(expires_at);
    `);
  }

  async createUser(user: UserRecord): Promise<UserRecord> {
    try {
      this.#db
        .prepare('INSERT INTO users (id, username, password_hash, created_at) VALUES (?, ?, ?, ?)')
        .run(user.id, user.username, user.passwordHash, user.createdAt);
    } catch (err) {
      if (/UNIQUE constraint failed: users\.username/.test(String((err as Error).message))) {
        throw new HostError('username_taken', 'That username is taken.', { cause: err });
      }
      throw err;
    }
    return user;
  }

  async findUserByUsername(username: string): Promise<UserRecord | null> {
    const row = this.#db.prepare('SELECT * FROM users WHERE username = ?').get(username) as
      UserRow | undefined;
    return row ? toUser(row) : null;
  }

  async getUser(id: string): Promise<UserRecord | null> {
    const row = this.#db.prepare('SELECT * FROM users WHERE id = ?').get(id) as UserRow | undefined;
    return row ? toUser(row) : null;
  }

  async createSession(s: SessionRecord): Promise<void> {
    this.#db
      .prepare('INSERT INTO sessions (id_hash, user_id, created_at, expires_at) VALUES (?, ?, ?, ?)')
      .run(s.idHash, s.userId, s.createdAt, s.expiresAt);
  }

  async getSession(idHash: string, now: number): Promise<SessionRecord | null> {
    const row = this.#db
      .prepare('SELECT * FROM sessions WHERE id_hash = ? AND expires_at > ?')
      .get(idHash, now) as SessionRow | undefined;
    return row
      ? { idHash: row.id_hash, userId: row.user_id, createdAt: row.created_at, expiresAt: row.expires_at }
      : null;
  }

  async deleteSession(idHash: string): Promise<void> {
    this.#db.prepare('DELETE FROM sessions WHERE id_hash = ?').run(idHash);
  }

  async deleteExpiredSessions(now: number): Promise<number> {
    return Number(this.#db.prepare('DELETE FROM sessions WHERE expires_at <= ?').run(now).changes);
  }

  async close(): Promise<void> {
    if (this.#db.isOpen) this.#db.close();
  }
}
