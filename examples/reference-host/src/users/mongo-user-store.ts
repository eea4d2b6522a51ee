import type { Collection, Db } from 'mongodb';
import { HostError } from '../errors.js';
import type { IdentityRecord, SessionRecord, UserRecord, UserStore } from './user-store.js';

interface UserDoc {
  _id: string;
  username: string;
  passwordHash: string;
  createdAt: number;
}
interface IdentityDoc {
  /** `issuer` and `subject` joined by a newline (neither may contain one): unique by being the key. */
  _id: string;
  issuer: string;
  subject: string;
  userId: string;
  email: string | null;
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

const identityKey = (issuer: string, subject: string) => `${issuer}\n${subject}`;

/** Users and sessions in MongoDB (collections `host_users`, `host_sessions`), used when MONGODB_URI is set. */
export class MongoUserStore implements UserStore {
  readonly #users: Collection<UserDoc>;
  readonly #sessions: Collection<SessionDoc>;
  readonly #identities: Collection<IdentityDoc>;

  private constructor(db: Db) {
    this.#identities = db.collection<IdentityDoc>('host_identities');
    this.#users = db.collection<UserDoc>('host_users');
    this.#sessions = db.collection<SessionDoc>('host_sessions');
  }

  /** Opens the collections and makes sure their indexes exist. The caller owns (and closes) the client. */
  static async open(db: Db): Promise<MongoUserStore> {
    const s = new MongoUserStore(db);
    await s.#users.createIndex({ username: 1 }, { unique: true });
    await s.#sessions.createIndex({ expireAt: 1 }, { expireAfterSeconds: 0 });
    await s.#identities.createIndex({ email: 1, createdAt: 1 });
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

  /**
   * The identity goes in first (its key is the unique one that races), then the user; if the user cannot be
   * stored the identity is taken back, so a failure leaves neither (no multi-document transaction needed).
   */
  async createUserWithIdentity(user: UserRecord, identity: IdentityRecord): Promise<UserRecord> {
    await this.addIdentity(identity);
    try {
      await this.createUser(user);
    } catch (err) {
      await this.#identities.deleteOne({ _id: identityKey(identity.issuer, identity.subject) });
      throw err;
    }
    return user;
  }

  async addIdentity(identity: IdentityRecord): Promise<void> {
    try {
      await this.#identities.insertOne({ _id: identityKey(identity.issuer, identity.subject), ...identity });
    } catch (err) {
      if ((err as { code?: unknown }).code === 11000) {
        throw new HostError('identity_taken', 'That sign-in is linked to an account already.', {
          cause: err,
        });
      }
      throw err;
    }
  }

  async findUserByIdentity(issuer: string, subject: string): Promise<UserRecord | null> {
    const i = await this.#identities.findOne({ _id: identityKey(issuer, subject) });
    return i ? this.getUser(i.userId) : null;
  }

  async findUserByVerifiedEmail(email: string): Promise<UserRecord | null> {
    const i = await this.#identities.findOne({ email }, { sort: { createdAt: 1 } });
    return i ? this.getUser(i.userId) : null;
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
