/** A registered user. `username` is stored lower-cased; `passwordHash` is an argon2id PHC string. */
export interface UserRecord {
  id: string;
  username: string;
  passwordHash: string;
  createdAt: number;
}

/** A server-side session. `idHash` is the SHA-256 of the cookie value, so a leaked table opens no session. */
export interface SessionRecord {
  idHash: string;
  userId: string;
  createdAt: number;
  expiresAt: number;
}

/**
 * The host's storage port for users and sessions. Adapters: {@link SqliteUserStore} (node:sqlite, the default)
 * and {@link MongoUserStore} (official driver, chosen by MONGODB_URI).
 */
export interface UserStore {
  /** Creates a user. Throws HostError `username_taken` when the username exists. */
  createUser(user: UserRecord): Promise<UserRecord>;
  findUserByUsername(username: string): Promise<UserRecord | null>;
  getUser(id: string): Promise<UserRecord | null>;
  createSession(session: SessionRecord): Promise<void>;
  /** The session, or null when it does not exist or has expired at `now`. */
  getSession(idHash: string, now: number): Promise<SessionRecord | null>;
  deleteSession(idHash: string): Promise<void>;
  /** Deletes every session expired at `now`; returns how many. */
  deleteExpiredSessions(now: number): Promise<number>;
  close(): Promise<void>;
}
