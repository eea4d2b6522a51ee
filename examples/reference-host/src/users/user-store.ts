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
 * A sign-in identity at an OpenID provider, linked to one user: the provider's `issuer` and its stable
 * `subject` for the person. `email` is kept only when the provider said it was verified (null otherwise), and
 * is what a later sign-in with the same verified email links by.
 */
export interface IdentityRecord {
  issuer: string;
  subject: string;
  userId: string;
  email: string | null;
  createdAt: number;
}

/**
 * The host's storage port for users and sessions. Adapters: {@link SqliteUserStore} (node:sqlite, the default)
 * and {@link MongoUserStore} (official driver, chosen by MONGODB_URI).
 */
export interface UserStore {
  /** Creates a user. Throws HostError `username_taken` when the username exists. */
  createUser(user: UserRecord): Promise<UserRecord>;
  findUserByUsername(username: string): Promise<UserRecord | null>;
  /**
   * Creates a user together with its first identity, both or neither. Throws HostError `username_taken` or
   * `identity_taken` (the identity is linked to a user already) and then stores nothing.
   */
  createUserWithIdentity(user: UserRecord, identity: IdentityRecord): Promise<UserRecord>;
  /** Links an identity to an existing user. Throws HostError `identity_taken` when it is linked already. */
  addIdentity(identity: IdentityRecord): Promise<void>;
  /** The user an (issuer, subject) identity is linked to, or null. */
  findUserByIdentity(issuer: string, subject: string): Promise<UserRecord | null>;
  /** The user one of whose identities has this verified email (lower-cased), the earliest linked, or null. */
  findUserByVerifiedEmail(email: string): Promise<UserRecord | null>;
  getUser(id: string): Promise<UserRecord | null>;
  createSession(session: SessionRecord): Promise<void>;
  /** The session, or null when it does not exist or has expired at `now`. */
  getSession(idHash: string, now: number): Promise<SessionRecord | null>;
  deleteSession(idHash: string): Promise<void>;
  /** Deletes every session expired at `now`; returns how many. */
  deleteExpiredSessions(now: number): Promise<number>;
  close(): Promise<void>;
}
