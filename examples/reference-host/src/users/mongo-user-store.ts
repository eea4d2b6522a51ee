import type { Collection, Db } from 'mongodb';
import { HostError } from '../errors.js';
import type { SessionRecord, UserRecord, UserStore } from './user-store.js';

interface UserDoc {
  _id: string;
  username: string;
  passwordHash: string;
  createdAt: number;
}
interface SessionDoc {
  _id: string;
  userId: string;
  createdAt: number;
  expiresAt: number;
  /** Same instant as `expiresAt`, as a Date, for MongoDB's TTL index to clean up expired sessions. */
  expireAt: Date;
}

/** Users and sessions in MongoDB (collections `host_users`, `host_sessions`), used when MONGODB_URI is set. */
export class MongoUserStore implements UserStore {
  readonly #users: Collection<UserDoc>;
  readonly #sessions: Collection<SessionDoc>;

  private constructor(db: Db) {
    this.#users = db.collection<UserDoc>('host_users');
    this.#sessions = db.collection<SessionDoc>('host_sessions');
  }

  /** Opens the collections and makes sure their indexes exist. The caller owns (and closes) the client. */
  static async open(db: Db): Promise<MongoUserStore> {
    const s = new MongoUserStore(db);
    await s.#users.createIndex({ username: 1 }, { unique: true });
    await s.#sessions.createIndex({ expireAt: 1 }, { expireAfterSeconds: 0 });
    return s;
  }

  async createUser(user: UserRecord): Promise<UserRecord> {
    try {
      await this.#users.insertOne({
        _id: user.id,
        username: user.username,
        passwordHash: user.passwordHash,
        createdAt: user.createdAt,
      });
    } catch (err) {
      if ((err as { code?: unknown }).code === 11000) {
        throw new HostError('username_taken', 'That username is taken.', { cause: err });
      }
      throw err;
    }
    return user;
  }

  async findUserByUsername(username: string): Promise<UserRecord | null> {
    const d = await this.#users.findOne({ username });
    return d
      ? { id: d._id, username: d.username, passwordHash: d.passwordHash, createdAt: d.createdAt }
      : null;
  }

  async getUser(id: string): Promise<UserRecord | null> {
    const d = await this.#users.findOne({ _id: id });
    return d
      ? { id: d._id, username: d.username, passwordHash: d.passwordHash, createdAt: d.createdAt }
      : null;
  }

  async createSession(s: SessionRecord): Promise<void> {
    await this.#sessions.insertOne({
      _id: s.idHash,
      userId: s.userId,
      createdAt: s.createdAt,
      expiresAt: s.expiresAt,
      expireAt: new Date(s.expiresAt),
    });
  }

  async getSession(idHash: string, now: number): Promise<SessionRecord | null> {
    // The TTL monitor runs about once a minute, so expiry is also checked here.
    const d = await this.#sessions.findOne({ _id: idHash, expiresAt: { $gt: now } });
    return d ? { idHash: d._id, userId: d.userId, createdAt: d.createdAt, expiresAt: d.expiresAt } : null;
  }

  async deleteSession(idHash: string): Promise<void> {
    await this.#sessions.deleteOne({ _id: idHash });
  }

  async deleteExpiredSessions(now: number): Promise<number> {
    return (await this.#sessions.deleteMany({ expiresAt: { $lte: now } })).deletedCount;
  }

  async close(): Promise<void> {
    // The MongoClient is shared with the relay store and closed by whoever opened it.
  }
}
