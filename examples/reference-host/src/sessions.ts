import { createHash, randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Request, Response } from 'express';
import type { UserRecord, UserStore } from './users/user-store.js';

const hashId = (id: string) => createHash('sha256').update(id).digest('base64url');
/** setTimeout's longest delay; a session can outlive it (SESSION_TTL_HOURS up to a year). */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Cookie-backed server-side sessions: the cookie holds a random id; the store holds only its SHA-256. */
export class Sessions {
  readonly cookieName: string;
  readonly #users: UserStore;
  readonly #ttlMs: number;
  readonly #secure: boolean;
  /*
   * Sockets (WebSocket upgrades) opened with each session. The relay authenticates a socket once, at upgrade,
   * so without this a tab would keep chatting after the user signed out elsewhere or the session expired.
   */
  readonly #sockets = new Map<string, Set<Socket>>();

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
    if (previous !== undefined && previous.length <= 128) await this.#drop(hashId(previous));
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

  /**
   * The signed-in user of a WebSocket upgrade request, or null. The socket is tied to the session: it is
   * closed when the session ends (sign-out, a new sign-in from the same browser) or expires, and the page
   * then finds itself signed out when it reconnects.
   */
  async userOfUpgrade(req: IncomingMessage): Promise<UserRecord | null> {
    const id = readCookie(req.headers.cookie, this.cookieName);
    if (id === undefined || id.length > 128) return null;
    const idHash = hashId(id);
    const session = await this.#users.getSession(idHash, Date.now());
    if (!session) return null;
    const user = await this.#users.getUser(session.userId);
    if (user) this.#track(idHash, req.socket as Socket, session.expiresAt);
    return user;
  }

  /** Ends the request's session (if any), closes its sockets and clears its cookie. */
  async end(req: Request, res: Response): Promise<void> {
    const id = readCookie(req.headers.cookie, this.cookieName);
    if (id !== undefined && id.length <= 128) await this.#drop(hashId(id));
    res.clearCookie(this.cookieName, { httpOnly: true, sameSite: 'lax', secure: this.#secure, path: '/' });
  }

  async #drop(idHash: string): Promise<void> {
    await this.#users.deleteSession(idHash);
    const sockets = this.#sockets.get(idHash);
    this.#sockets.delete(idHash);
    // The browser sees the socket drop, reconnects, and is refused (401) because the session is gone.
    for (const socket of sockets ?? []) socket.destroy();
  }

  #track(idHash: string, socket: Socket, expiresAt: number): void {
    if (socket.destroyed) return;
    let set = this.#sockets.get(idHash);
    if (!set) this.#sockets.set(idHash, (set = new Set()));
    set.add(socket);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const arm = () => {
      const left = expiresAt - Date.now();
      if (left <= 0) return socket.destroy();
      timer = setTimeout(arm, Math.min(left, MAX_TIMER_MS));
      timer.unref();
    };
    arm();
    socket.once('close', () => {
      clearTimeout(timer);
      const s = this.#sockets.get(idHash);
      s?.delete(socket);
      if (s?.size === 0) this.#sockets.delete(idHash);
    });
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
