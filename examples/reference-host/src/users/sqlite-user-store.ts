import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { HostError } from '../errors.js';
import type { IdentityRecord, SessionRecord, UserRecord, UserStore } from './user-store.js';

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
      CREATE TABLE IF NOT EXISTS identities (
        issuer TEXT NOT NULL,
        subject TEXT NOT NULL,
        user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        email TEXT,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (issuer, subject)
      );
      CREATE INDEX IF NOT EXISTS identities_email ON identities(email, created_at);
    `);
  }

  async createUser(user: UserRecord): Promise<UserRecord> {
    this.#insertUser(user);
    return user;
  }

  #insertUser(user: UserRecord): void {
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
  }

  async createUserWithIdentity(user: UserRecord, identity: IdentityRecord): Promise<UserRecord> {
    // Synchronous from BEGIN to COMMIT: no other call can run on this connection inside the transaction.
    this.#db.exec('BEGIN IMMEDIATE');
    try {
      this.#insertUser(user);
      this.#insertIdentity(identity);
      this.#db.exec('COMMIT');
    } catch (err) {
      this.#db.exec('ROLLBACK');
      throw err;
    }
    return user;
  }

  async addIdentity(identity: IdentityRecord): Promise<void> {
    this.#insertIdentity(identity);
  }

  #insertIdentity(identity: IdentityRecord): void {
    try {
      this.#db
        .prepare(
          'INSERT INTO identities (issuer, subject, user_id, email, created_at) VALUES (?, ?, ?, ?, ?)',
        )
        .run(identity.issuer, identity.subject, identity.userId, identity.email, identity.createdAt);
    } catch (err) {
      if (/UNIQUE constraint failed: identities\./.test(String((err as Error).message))) {
        throw new HostError('identity_taken', 'That sign-in is linked to an account already.', {
          cause: err,
        });
      }
      throw err;
    }
  }

  async findUserByIdentity(issuer: string, subject: string): Promise<UserRecord | null> {
    const row = this.#db
      .prepare(
        'SELECT users.* FROM identities JOIN users ON users.id = identities.user_id WHERE issuer = ? AND subject = ?',
      )
      .get(issuer, subject) as UserRow | undefined;
    return row ? toUser(row) : null;
  }

  async findUserByVerifiedEmail(email: string): Promise<UserRecord | null> {
    const row = this.#db
      .prepare(
        'SELECT users.* FROM identities JOIN users ON users.id = identities.user_id WHERE email = ? ORDER BY identities.created_at LIMIT 1',
      )
      .get(email) as UserRow | undefined;
    return row ? toUser(row) : null;
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
