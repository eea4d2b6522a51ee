import { createHash, randomBytes } from 'node:crypto';
import type { Request, Response } from 'express';
import type { UserRecord, UserStore } from './users/user-store.js';

const hashId = (id: string) => createHash('sha256').update(id).digest('base64url');

/** Cookie-backed server-side sessions: the cookie holds a random id; the store holds only its SHA-256. */
export class Sessions {
  readonly cookieName: string;
  readonly #users: UserStore;
  readonly #ttlMs: number;
  readonly #secure: boolean;

  constructor(users: UserStore, options: { ttlMs: number; secure: boolean }) {
    this.#users = users;
    this.#ttlMs = options.ttlMs;
    this.#secure = options.secure;
    // The __Host- prefix makes the browser refuse the cookie unless it is Secure, host-only and Path=/.
    this.cookieName = options.secure ? '__Host-tl_session' : 'tl_session';
  }

  /**
   * Starts a session for `userId` and sets its cookie. A session the request already carried is deleted
   * first, so signing in always gets a fresh id (no session fixation) and leaves no stray session behind.
   */
  async start(req: Request, res: Response, userId: string): Promise<void> {
    const previous = readCookie(req.headers.cookie, this.cookieName);
    if (previous !== undefined && previous.length <= 128) await this.#users.deleteSession(hashId(previous));
    const id = randomBytes(32).toString('base64url');
    const now = Date.now();
    await this.#users.createSession({
      idHash: hashId(id),
      userId,
      createdAt: now,
      expiresAt: now + this.#ttlMs,
    });
    res.cookie(this.cookieName, id, {
      httpOnly: true,
      sameSite: 'lax',
      secure: this.#secure,
      path: '/',
      maxAge: this.#ttlMs,
    });
  }

  /** The signed-in user of a request (from its Cookie header), or null. */
  async userOf(cookieHeader: string | undefined): Promise<UserRecord | null> {
    const id = readCookie(cookieHeader, this.cookieName);
    if (id === undefined || id.length > 128) return null;
    const session = await this.#users.getSession(hashId(id), Date.now());
    if (!session) return null;
    return this.#users.getUser(session.userId);
  }

  /** Ends the request's session (if any) and clears its cookie. */
  async end(req: Request, res: Response): Promise<void> {
    const id = readCookie(req.headers.cookie, this.cookieName);
    if (id !== undefined) await this.#users.deleteSession(hashId(id));
    res.clearCookie(this.cookieName, { httpOnly: true, sameSite: 'lax', secure: this.#secure, path: '/' });
  }
}

/** Reads one cookie from a Cookie header without a parser dependency. */
export function readCookie(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq === -1) continue;
    if (part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}
