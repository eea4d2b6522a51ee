import type pg from 'pg';
import { isPostgresUnavailable } from '@threadline/relay/postgres';
import { HostError } from '../errors.js';
import type { IdentityRecord, SessionRecord, UserRecord, UserStore } from './user-store.js';

interface UserRow {
  id: string;
  username: string;
  password_hash: string;
  created_at: string;
}
interface SessionRow {
  id_hash: string;
  user_id: string;
  created_at: string;
  expires_at: string;
}

const toUser = (r: UserRow): UserRecord => ({
  id: r.id,
  username: r.username,
  passwordHash: r.password_hash,
  createdAt: Number(r.created_at),
});

const SCHEMA = `
CREATE TABLE IF NOT EXISTS host_users (
  id text COLLATE "C" PRIMARY KEY,
  username text COLLATE "C" NOT NULL CONSTRAINT host_users_username_key UNIQUE,
  password_hash text NOT NULL,
  created_at bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS host_sessions (
  id_hash text COLLATE "C" PRIMARY KEY,
  user_id text COLLATE "C" NOT NULL REFERENCES host_users(id) ON DELETE CASCADE,
  created_at bigint NOT NULL,
  expires_at bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS host_sessions_expires ON host_sessions (expires_at);
CREATE TABLE IF NOT EXISTS host_identities (
  issuer text COLLATE "C" NOT NULL,
  subject text COLLATE "C" NOT NULL,
  user_id text COLLATE "C" NOT NULL REFERENCES host_users(id) ON DELETE CASCADE,
  email text COLLATE "C",
  created_at bigint NOT NULL,
  CONSTRAINT host_identities_pkey PRIMARY KEY (issuer, subject)
);
CREATE INDEX IF NOT EXISTS host_identities_email ON host_identities (email, created_at);
`;

const INSERT_IDENTITY =
  'INSERT INTO host_identities (issuer, subject, user_id, email, created_at) VALUES ($1, $2, $3, $4, $5)';
const identityValues = (i: IdentityRecord) => [i.issuer, i.subject, i.userId, i.email, i.createdAt];

/** The server cannot be reached or went away, or a statement ran past its timeout (`query_canceled`). */
function unavailable(error: unknown): boolean {
  return isPostgresUnavailable(error) || (error as { code?: unknown } | null)?.code === '57014';
}

/**
 * Users and sessions in PostgreSQL (tables `host_users`, `host_sessions`), used when DATABASE_URL is set, so
 * that a user signed in through one instance is signed in on all of them. The pool is the caller's (the host
 * shares it with the relay's store) and is not closed here. A server that cannot be reached fails a call with
 * HostError `store_unavailable` (HTTP 503), never a crash.
 */
export class PostgresUserStore implements UserStore {
  readonly #pool: pg.Pool;

  private constructor(pool: pg.Pool) {
    this.#pool = pool;
  }

  /** Creates the tables if they are missing (under an advisory lock: instances starting together don't race). */
  static async open(pool: pg.Pool): Promise<PostgresUserStore> {
    const s = new PostgresUserStore(pool);
    const client = await pool.connect().catch((error: unknown) => {
      throw s.#error(error, 'opening the users tables');
    });
    try {
      await client.query('BEGIN');
      await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', ['threadline:host_users']);
      await client.query(SCHEMA);
      await client.query('COMMIT');
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {});
      throw s.#error(error, 'creating the users tables');
    } finally {
      client.release();
    }
    return s;
  }

  #error(error: unknown, doing: string): Error {
    if (!unavailable(error)) return error instanceof Error ? error : new Error(String(error));
    const why = (error as Error).message || String((error as { code?: unknown }).code);
    return new HostError('store_unavailable', `PostgreSQL is unavailable (${why}) while ${doing}`, {
      cause: error,
    });
  }

  async #query<R extends pg.QueryResultRow>(
    doing: string,
    sql: string,
    values: unknown[],
  ): Promise<pg.QueryResult<R>> {
    try {
      return await this.#pool.query<R>(sql, values);
    } catch (error) {
      throw this.#error(error, doing);
    }
  }

  async createUser(user: UserRecord): Promise<UserRecord> {
    try {
      await this.#pool.query(
        'INSERT INTO host_users (id, username, password_hash, created_at) VALUES ($1, $2, $3, $4)',
        [user.id, user.username, user.passwordHash, user.createdAt],
      );
    } catch (error) {
      const e = error as { code?: unknown; constraint?: unknown };
      if (e.code === '23505' && e.constraint === 'host_users_username_key') {
        throw new HostError('username_taken', 'That username is taken.', { cause: error });
      }
      throw this.#error(error, 'creating a user');
    }
    return user;
  }

  async createUserWithIdentity(user: UserRecord, identity: IdentityRecord): Promise<UserRecord> {
    const client = await this.#pool.connect().catch((error: unknown) => {
      throw this.#error(error, 'creating a user');
    });
    try {
      await client.query('BEGIN');
      await client.query(
        'INSERT INTO host_users (id, username, password_hash, created_at) VALUES ($1, $2, $3, $4)',
        [user.id, user.username, user.passwordHash, user.createdAt],
      );
      await client.query(INSERT_IDENTITY, identityValues(identity));
      await client.query('COMMIT');
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {});
      throw this.#conflict(error) ?? this.#error(error, 'creating a user');
    } finally {
      client.release();
    }
    return user;
  }

  async addIdentity(identity: IdentityRecord): Promise<void> {
    try {
      await this.#pool.query(INSERT_IDENTITY, identityValues(identity));
    } catch (error) {
      throw this.#conflict(error) ?? this.#error(error, 'linking a sign-in');
    }
  }

  /** A unique-key violation as the HostError it means, else undefined. */
  #conflict(error: unknown): HostError | undefined {
    const e = error as { code?: unknown; constraint?: unknown };
    if (e.code !== '23505') return undefined;
    if (e.constraint === 'host_users_username_key') {
      return new HostError('username_taken', 'That username is taken.', { cause: error });
    }
    if (e.constraint === 'host_identities_pkey') {
      return new HostError('identity_taken', 'That sign-in is linked to an account already.', {
        cause: error,
      });
    }
    return undefined;
  }

  async findUserByIdentity(issuer: string, subject: string): Promise<UserRecord | null> {
    const { rows } = await this.#query<UserRow>(
      'reading a user',
      `SELECT u.id, u.username, u.password_hash, u.created_at FROM host_identities i
       JOIN host_users u ON u.id = i.user_id WHERE i.issuer = $1 AND i.subject = $2`,
      [issuer, subject],
    );
    return rows[0] ? toUser(rows[0]) : null;
  }

  async findUserByVerifiedEmail(email: string): Promise<UserRecord | null> {
    const { rows } = await this.#query<UserRow>(
      'reading a user',
      `SELECT u.id, u.username, u.password_hash, u.created_at FROM host_identities i
       JOIN host_users u ON u.id = i.user_id WHERE i.email = $1 ORDER BY i.created_at LIMIT 1`,
      [email],
    );
    return rows[0] ? toUser(rows[0]) : null;
  }

  async findUserByUsername(username: string): Promise<UserRecord | null> {
    const { rows } = await this.#query<UserRow>(
      'reading a user',
      'SELECT id, username, password_hash, created_at FROM host_users WHERE username = $1',
      [username],
    );
    return rows[0] ? toUser(rows[0]) : null;
  }

  async getUser(id: string): Promise<UserRecord | null> {
    const { rows } = await this.#query<UserRow>(
      'reading a user',
      'SELECT id, username, password_hash, created_at FROM host_users WHERE id = $1',
      [id],
    );
    return rows[0] ? toUser(rows[0]) : null;
  }

  async createSession(s: SessionRecord): Promise<void> {
    await this.#query(
      'creating a session',
      'INSERT INTO host_sessions (id_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)',
      [s.idHash, s.userId, s.createdAt, s.expiresAt],
    );
  }

  async getSession(idHash: string, now: number): Promise<SessionRecord | null> {
    const { rows } = await this.#query<SessionRow>(
      'reading a session',
      'SELECT id_hash, user_id, created_at, expires_at FROM host_sessions WHERE id_hash = $1 AND expires_at > $2',
      [idHash, now],
    );
    const r = rows[0];
    return r
      ? {
          idHash: r.id_hash,
          userId: r.user_id,
          createdAt: Number(r.created_at),
          expiresAt: Number(r.expires_at),
        }
      : null;
  }

  async deleteSession(idHash: string): Promise<void> {
    await this.#query('deleting a session', 'DELETE FROM host_sessions WHERE id_hash = $1', [idHash]);
  }

  async deleteExpiredSessions(now: number): Promise<number> {
    const { rowCount } = await this.#query(
      'deleting expired sessions',
      'DELETE FROM host_sessions WHERE expires_at <= $1',
      [now],
    );
    return rowCount ?? 0;
  }

  async close(): Promise<void> {
    // The pool is shared with the relay's store and closed by whoever opened it.
  }
}
