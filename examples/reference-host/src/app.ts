import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import express, {
  type ErrorRequestHandler,
  type NextFunction,
  type Request,
  type RequestHandler,
  type Response,
} from 'express';
import { z } from 'zod';
import { IdSchema } from '@threadline/contracts';
import { RelayError, type EventStore, type Relay } from '@threadline/relay';
import type { ToolStore } from '@threadline/tools-kit';
import { HostError, isStoreUnavailable, type HostIssue } from './errors.js';
import { hashPassword, isCommonPassword, verifyPassword } from './passwords.js';
import { RateLimiter } from './rate-limit.js';
import { originCheck, securityHeaders } from './security.js';
import type { Sessions } from './sessions.js';
import type { UserRecord, UserStore } from './users/user-store.js';

/** Most events `GET /api/threads/:threadId/usage` reads to sum a thread's token usage. */
const USAGE_SCAN_EVENTS = 100_000;

/** The part of the store the REST routes read directly: a thread's log (relay) and a user's profile (tools-kit). */
export type ThreadStore = Pick<EventStore, 'read' | 'lastSeq'> & Pick<ToolStore, 'getProfile'>;

/**
 * Threads are created, listed, read, renamed and deleted through the relay: it applies `authorize` (another
 * user's thread answers like a missing one), refuses a delete while a run is going, and ends the live
 * subscriptions to a deleted thread (on every instance sharing its pub/sub).
 */
export type ThreadActions = Pick<
  Relay,
  'createThread' | 'listThreads' | 'getThread' | 'renameThread' | 'deleteThread'
>;

/** Bounds of the HTTP API, with their defaults. */
export interface AppLimits {
  /** Largest JSON body on /api routes, in bytes. Default 16 KiB. */
  jsonBodyBytes: number;
  /**
   * Failed sign-ins per (client address, username) per window; then that pair is refused until the window
   * ends. Counted per address so that failing on someone's account never locks them out elsewhere. Default 10.
   */
  authAttempts: number;
  /** Failed sign-ins per client address per window, whatever the username (password spraying). Default 100. */
  authFailuresPerAddress: number;
  /** Sign-ups per client address per window. Default 20. */
  signups: number;
  /** The window of the sign-in and sign-up limits, in ms. Default 5 minutes. */
  authWindowMs: number;
  /** Most events one GET /api/threads/:id/events returns. Default 1000. */
  maxEventsPerPage: number;
  /** Most threads one user may own (at most 1000, what the store lists in one query). Default 1000. */
  maxThreadsPerUser: number;
}

export const DEFAULT_APP_LIMITS: AppLimits = {
  jsonBodyBytes: 16 * 1024,
  authAttempts: 10,
  authFailuresPerAddress: 100,
  signups: 20,
  authWindowMs: 5 * 60_000,
  maxEventsPerPage: 1000,
  maxThreadsPerUser: 1000,
};

/** What the Express app is built from. */
export interface AppOptions {
  users: UserStore;
  store: ThreadStore;
  /** The relay's thread API, behind every /api/threads route and the chat page's owner check. */
  threads: ThreadActions;
  sessions: Sessions;
  isAllowedOrigin(origin: string): boolean;
  /** The tools-kit Express adapter (handles /tools and /state); mounted before any body parser. */
  tools?: RequestHandler;
  /**
   * The AG-UI endpoint (`@threadline/relay/ag-ui`), served at POST /api/ag-ui after the Origin check and
   * before the JSON parser (it reads and bounds its own body: AG-UI clients send their whole history).
   */
  agUi?: RequestHandler;
  /** "Continue with Google" (./oidc.ts `oidcRoutes`), served at /auth/oidc when configured. */
  oidc?: RequestHandler;
  /** Path of the built `<agent-chat>` single-file bundle, served at /assets/agent-chat.js. */
  webComponentFile?: string | undefined;
  /** Folder of the static pages. */
  publicDir: string;
  /**
   * GET /healthz: 200 when `status` is "ok" (or absent), else 503, so a load balancer routes only to an
   * instance where a message would run.
   */
  health?: () => Promise<HealthReport> | HealthReport;
  hsts?: boolean;
  /**
   * Express's `trust proxy`: whose X-Forwarded-For to believe for the client address (`req.ip`) that every
   * per-address limit counts by. Default `false`: the socket's address (X-Forwarded-For is ignored).
   */
  trustProxy?: false | number | string[];
  limits?: Partial<AppLimits>;
  logger?: Pick<Console, 'error'>;
}

/** What GET /healthz reports: `status` and any other facts. */
export type HealthReport = { status?: 'ok' | 'starting' | 'degraded' } & Record<string, unknown>;

const UsernameSchema = z
  .string({ error: 'username is required' })
  .trim()
  .toLowerCase()
  .min(3, 'username must be at least 3 characters')
  .max(32, 'username must be at most 32 characters')
  .regex(
    /^[a-z0-9][a-z0-9_.-]*$/,
    'username may contain only letters, digits and _ . - (starting with a letter or digit)',
  );
const CredentialsSchema = z.strictObject({
  username: UsernameSchema,
  password: z
    .string({ error: 'password is required' })
    .min(8, 'password must be at least 8 characters')
    .max(256, 'password must be at most 256 characters'),
});
// Login accepts any password length up to the cap so that a too-short guess gets the same generic answer.
const LoginSchema = z.strictObject({
  username: z.string({ error: 'username is required' }).trim().toLowerCase().min(1).max(64),
  password: z.string({ error: 'password is required' }).min(1).max(256),
});
const CreateThreadSchema = z.strictObject({
  title: z
    .string()
    .trim()
    .min(1, 'title must not be empty')
    .max(200, 'title must be at most 200 characters')
    .optional(),
});
const RenameThreadSchema = z.strictObject({
  title: z
    .string({ error: 'title is required' })
    .trim()
    .min(1, 'title must not be empty')
    .max(200, 'title must be at most 200 characters'),
});
const EventsQuerySchema = z.strictObject({
  afterSeq: z.coerce.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER).default(0),
  limit: z.coerce.number().int().min(1).max(1_000_000).optional(),
});

const newId = (prefix: string) => `${prefix}_${randomBytes(12).toString('base64url')}`;

function parse<S extends z.ZodType>(schema: S, input: unknown, what: string): z.infer<S> {
  const r = schema.safeParse(input);
  if (r.success) return r.data as z.infer<S>;
  const issues: HostIssue[] = r.error.issues.slice(0, 20).map((i) => ({
    path: i.path.map(String).join('.'),
    message: i.code === 'unrecognized_keys' ? `unknown key: ${i.keys.join(', ')}` : i.message,
  }));
  const first = issues[0];
  throw new HostError('invalid_input', `Invalid ${what}${first ? `: ${first.message}` : ''}`, { issues });
}

const userView = (u: UserRecord) => ({ id: u.id, username: u.username });
const threadView = (t: { threadId: string; title: string; createdAt: number; updatedAt: number }) => ({
  threadId: t.threadId,
  title: t.title,
  createdAt: t.createdAt,
  updatedAt: t.updatedAt,
});

type Handler = (req: Request, res: Response) => Promise<void>;
const route =
  (h: Handler): RequestHandler =>
  (req, res, next) => {
    h(req, res).catch(next);
  };

/**
 * Builds the host's Express app: security headers, the tool endpoints, auth, threads REST, pages and assets.
 * The relay's WebSocket is attached to the HTTP server separately.
 *
 * @example
 * const app = createApp({ users, store, sessions, isAllowedOrigin, publicDir });
 * http.createServer(app).listen(3000);
 */
export function createApp(options: AppOptions): express.Express {
  const limits = { ...DEFAULT_APP_LIMITS, ...options.limits };
  const { users, store, sessions } = options;
  const logger = options.logger ?? console;
  const pairLimiter = new RateLimiter({ limit: limits.authAttempts, windowMs: limits.authWindowMs });
  const addressLimiter = new RateLimiter({
    limit: limits.authFailuresPerAddress,
    windowMs: limits.authWindowMs,
  });
  const signupLimiter = new RateLimiter({ limit: limits.signups, windowMs: limits.authWindowMs });
  const app = express();
  app.set('trust proxy', options.trustProxy ?? false);
  app.disable('x-powered-by');
  app.set('etag', false);
  app.use(securityHeaders({ hsts: options.hsts ?? false }));

  app.get(
    '/healthz',
    route(async (_req, res) => {
      const report = { status: 'ok', ...(await options.health?.()) };
      res.status(report.status === 'ok' ? 200 : 503).json(report);
    }),
  );

  // Tool endpoints authenticate with the agent's bearer act-as token (no cookie), and read their own body.
  if (options.tools) app.use(options.tools);

  const requireUser = async (req: Request): Promise<UserRecord> => {
    const user = await sessions.userOf(req.headers.cookie);
    if (!user) throw new HostError('unauthorized', 'Sign in first.');
    return user;
  };
  // Relay refusals in the host's words: a thread of someone else is answered exactly like a missing one.
  const threadRefusal = (error: unknown): unknown => {
    if (!(error instanceof RelayError)) return error;
    const code = error.code;
    if (code === 'not_found') return new HostError('not_found', 'No such thread.');
    if (code === 'run_active')
      return new HostError('run_active', 'This thread is still answering. Stop the answer, then try again.');
    if (code === 'invalid_message') return new HostError('invalid_input', 'Invalid thread title.');
    // The relay wraps every store failure; a database that cannot answer is 503, a plain bug stays a 500.
    if (code === 'store_error') {
      if (!isStoreUnavailable(error.cause)) return error.cause ?? error;
      return new HostError(
        'store_unavailable',
        'The database cannot take this right now. Try again shortly.',
        {
          cause: error,
        },
      );
    }
    return error;
  };
  const threads = options.threads;
  const ownThread = async (user: UserRecord, threadId: string) => {
    // Someone else's thread answers exactly like a missing one: no way to probe which ids exist.
    if (!IdSchema.safeParse(threadId).success) throw new HostError('not_found', 'No such thread.');
    return threads.getThread({ user: { id: user.id }, threadId }).catch((error: unknown) => {
      throw threadRefusal(error);
    });
  };

  const api = express.Router();
  api.use((_req, res, next) => {
    res.setHeader('Cache-Control', 'no-store');
    next();
  });
  api.use(originCheck(options.isAllowedOrigin));
  if (options.agUi) api.post('/ag-ui', options.agUi);
  api.use((req, _res, next) => {
    const hasBody =
      Number(req.headers['content-length'] ?? 0) > 0 || req.headers['transfer-encoding'] !== undefined;
    if (req.method === 'POST' && hasBody && !req.is('application/json')) {
      return next(new HostError('unsupported_media_type', 'Send JSON with Content-Type: application/json.'));
    }
    next();
  });
  api.use(express.json({ limit: limits.jsonBodyBytes, strict: true }));

  // The client address: the socket's, or with `trust proxy` the one the trusted proxies forwarded.
  const clientAddress = (req: Request) => req.ip ?? req.socket.remoteAddress ?? '';
  const rateLimited = (retryAfterSeconds: number) =>
    new HostError('rate_limited', 'Too many attempts. Wait a few minutes and try again.', {
      retryAfterSeconds,
    });

  api.post(
    '/auth/signup',
    route(async (req, res) => {
      const address = clientAddress(req);
      if (!signupLimiter.hit(address)) throw rateLimited(signupLimiter.retryAfterSeconds(address));
      const { username, password } = parse(CredentialsSchema, req.body ?? {}, 'sign-up');
      if (isCommonPassword(password)) {
        throw new HostError(
          'password_too_common',
          'Choose another password: this one is among the most commonly used passwords, which attackers try first.',
          { issues: [{ path: 'password', message: 'is a commonly used password' }] },
        );
      }
      const user = await users.createUser({
        id: newId('usr'),
        username,
        passwordHash: await hashPassword(password),
        createdAt: Date.now(),
      });
      await sessions.start(req, res, user.id);
      res.status(201).json({ user: userView(user) });
    }),
  );

  api.post(
    '/auth/login',
    route(async (req, res) => {
      const { username, password } = parse(LoginSchema, req.body ?? {}, 'sign-in');
      // Failures count per (address, username) and per address, never per account alone: guessing from one
      // address is slowed, and an attacker failing on someone's account cannot lock them out of it. Every
      // attempt counts up front (so concurrent guesses cannot slip past the limit while hashes run); a
      // correct one is taken back afterwards.
      const address = clientAddress(req);
      const pair = `${address}\n${username}`;
      const pairOk = pairLimiter.hit(pair);
      const addressOk = addressLimiter.hit(address);
      if (!pairOk || !addressOk) {
        throw rateLimited(
          Math.max(
            pairOk ? 0 : pairLimiter.retryAfterSeconds(pair),
            addressOk ? 0 : addressLimiter.retryAfterSeconds(address),
          ),
        );
      }
      const user = await users.findUserByUsername(username);
      const ok = await verifyPassword(user?.passwordHash, password);
      if (!user || !ok) throw new HostError('invalid_credentials', 'Wrong username or password.');
      pairLimiter.reset(pair);
      addressLimiter.forgive(address);
      await sessions.start(req, res, user.id);
      res.json({ user: userView(user) });
    }),
  );

  // Which sign-in methods the sign-in page offers.
  api.get('/auth/methods', (_req, res) => {
    res.json({ password: true, google: options.oidc !== undefined });
  });

  api.post(
    '/auth/logout',
    route(async (req, res) => {
      await sessions.end(req, res);
      res.status(204).end();
    }),
  );

  api.get(
    '/me',
    route(async (req, res) => {
      const user = await requireUser(req);
      res.json({ user: userView(user), profile: await store.getProfile(user.id) });
    }),
  );

  api.get(
    '/threads',
    route(async (req, res) => {
      const user = await requireUser(req);
      const list = await threads
        .listThreads({ user: { id: user.id }, limit: 100 })
        .catch((error: unknown) => {
          throw threadRefusal(error);
        });
      res.json({ threads: list.map(threadView) });
    }),
  );

  // Thread creations in flight per user: each counts against the quota until it is stored, so concurrent
  // requests cannot all pass the check before any of them is stored. Entries live only while requests do.
  const creating = new Map<string, number>();
  api.post(
    '/threads',
    route(async (req, res) => {
      const user = await requireUser(req);
      const { title } = parse(CreateThreadSchema, req.body ?? {}, 'thread');
      const max = limits.maxThreadsPerUser;
      const othersInFlight = creating.get(user.id) ?? 0;
      creating.set(user.id, othersInFlight + 1);
      try {
        const owned = (
          await threads.listThreads({ user: { id: user.id }, limit: max }).catch((error: unknown) => {
            throw threadRefusal(error);
          })
        ).length;
        if (owned + othersInFlight >= max) {
          throw new HostError(
            'too_many_threads',
            `You have ${max} threads, the most one account may have. Continue in one of them.`,
          );
        }
        // Untitled ('') until the relay makes a title from the first message.
        const thread = await threads
          .createThread({ user: { id: user.id }, threadId: newId('thr'), title: title ?? '' })
          .catch((error: unknown) => {
            throw threadRefusal(error);
          });
        res.status(201).json(threadView(thread));
      } finally {
        const n = (creating.get(user.id) ?? 1) - 1;
        if (n <= 0) creating.delete(user.id);
        else creating.set(user.id, n);
      }
    }),
  );

  api.get(
    '/threads/:threadId',
    route(async (req, res) => {
      const user = await requireUser(req);
      const thread = await ownThread(user, String(req.params.threadId));
      res.json({ ...threadView(thread), lastSeq: await store.lastSeq(thread.threadId) });
    }),
  );

  api.patch(
    '/threads/:threadId',
    route(async (req, res) => {
      const user = await requireUser(req);
      const threadId = String(req.params.threadId);
      if (!IdSchema.safeParse(threadId).success) throw new HostError('not_found', 'No such thread.');
      const { title } = parse(RenameThreadSchema, req.body ?? {}, 'thread');
      const thread = await threads
        .renameThread({ user: { id: user.id }, threadId, title })
        .catch((error: unknown) => {
          throw threadRefusal(error);
        });
      res.json(threadView(thread));
    }),
  );

  api.delete(
    '/threads/:threadId',
    route(async (req, res) => {
      const user = await requireUser(req);
      const threadId = String(req.params.threadId);
      if (!IdSchema.safeParse(threadId).success) throw new HostError('not_found', 'No such thread.');
      await threads.deleteThread({ user: { id: user.id }, threadId }).catch((error: unknown) => {
        throw threadRefusal(error);
      });
      res.status(204).end();
    }),
  );

  api.get(
    '/threads/:threadId/usage',
    route(async (req, res) => {
      const user = await requireUser(req);
      const thread = await ownThread(user, String(req.params.threadId));
      // Summed from the RUN_FINISHED events in the log, a page at a time; bounded: past USAGE_SCAN_EVENTS
      // events the answer says `partial`.
      const usage = { inputTokens: 0, outputTokens: 0, totalTokens: 0, runs: 0 };
      let afterSeq = 0;
      let partial = false;
      for (;;) {
        const page = await store.read(thread.threadId, { afterSeq, limit: 1000 });
        for (const e of page) {
          if (!e.json.includes('"usage"')) continue;
          // Only the event's own type counts: a tool's STATE_CHANGED may carry the same words in its value.
          const event = JSON.parse(e.json) as { type?: unknown; usage?: typeof usage };
          const u = event.type === 'RUN_FINISHED' ? event.usage : undefined;
          if (!u) continue;
          usage.inputTokens += u.inputTokens;
          usage.outputTokens += u.outputTokens;
          usage.totalTokens += u.totalTokens;
          usage.runs++;
        }
        if (page.length < 1000) break;
        afterSeq = page[page.length - 1]!.seq;
        if (afterSeq >= USAGE_SCAN_EVENTS) {
          partial = true;
          break;
        }
      }
      res.json({ usage, ...(partial ? { partial: true } : {}) });
    }),
  );

  api.get(
    '/threads/:threadId/events',
    route(async (req, res) => {
      const user = await requireUser(req);
      const thread = await ownThread(user, String(req.params.threadId));
      const q = parse(EventsQuerySchema, req.query, 'query');
      const limit = Math.min(q.limit ?? limits.maxEventsPerPage, limits.maxEventsPerPage);
      // One extra row tells whether more follow without a second query.
      const rows = await store.read(thread.threadId, { afterSeq: q.afterSeq, limit: limit + 1 });
      const page = rows.slice(0, limit);
      const last = page.at(-1);
      // Stored events are already the exact JSON browsers get, so they are spliced in without re-parsing.
      res
        .type('application/json')
        .send(
          `{"events":[${page.map((e) => e.json).join(',')}],"nextAfterSeq":${last ? last.seq : q.afterSeq},"hasMore":${rows.length > limit}}`,
        );
    }),
  );

  api.use((_req, _res, next) => next(new HostError('not_found', 'No such API route.')));
  app.use('/api', api);

  if (options.oidc) app.use('/auth/oidc', options.oidc);

  // Pages. Each one is a static file; the chat page is only served to the thread's owner.
  const page = (name: string) => join(options.publicDir, name);
  const notFoundFile = page('404.html');
  const notFoundPage = existsSync(notFoundFile) ? readFileSync(notFoundFile, 'utf8') : undefined;
  const signedIn = async (req: Request) => (await sessions.userOf(req.headers.cookie)) !== null;
  app.get(
    '/',
    route(async (req, res) => {
      // Signed in already: go where the sign-in page was asked to return to (this site only), else the list.
      if (await signedIn(req)) return res.redirect(303, returnPath(req.query.next) ?? '/threads');
      res.sendFile(page('index.html'));
    }),
  );
  app.get(
    '/threads',
    route(async (req, res) => {
      if (!(await signedIn(req))) return res.redirect(303, '/');
      res.sendFile(page('threads.html'));
    }),
  );
  app.get(
    '/threads/:threadId',
    route(async (req, res) => {
      const user = await sessions.userOf(req.headers.cookie);
      if (!user) return res.redirect(303, `/?next=${encodeURIComponent(req.path)}`);
      await ownThread(user, String(req.params.threadId));
      res.sendFile(page('chat.html'));
    }),
  );
  app.get('/assets/agent-chat.js', (_req, res, next) => {
    const file = options.webComponentFile;
    if (file === undefined || !existsSync(file)) {
      return next(
        new HostError(
          'not_found',
          'The <agent-chat> bundle is not built: run `npm run build -w @threadline/web-component`.',
        ),
      );
    }
    res.type('text/javascript').sendFile(file);
  });
  app.use(express.static(options.publicDir, { index: false, redirect: false, dotfiles: 'ignore' }));
  app.use((_req, _res, next) => next(new HostError('not_found', 'Not found.')));

  const onError: ErrorRequestHandler = (err: unknown, req: Request, res: Response, _next: NextFunction) => {
    const e = toHostError(err);
    if (e.code === 'internal_error' || e.code === 'store_unavailable') {
      const ref = randomBytes(6).toString('hex');
      logger.error(`[${ref}] ${req.method} ${req.path}:`, err);
      return sendError(req, res, e, ref);
    }
    sendError(req, res, e, undefined, notFoundPage);
  };
  app.use(onError);
  return app;
}

/** Normalises anything thrown in a route (body-parser errors included) into a {@link HostError}. */
export function toHostError(err: unknown): HostError {
  if (err instanceof HostError) return err;
  const type = (err as { type?: unknown } | null)?.type;
  switch (type) {
    case 'entity.parse.failed':
      return new HostError('invalid_json', 'The request body is not valid JSON.', { cause: err });
    case 'entity.too.large':
      return new HostError('payload_too_large', 'The request body is too large.', { cause: err });
    case 'encoding.unsupported':
    case 'charset.unsupported':
      return new HostError('unsupported_media_type', 'Send UTF-8 JSON.', { cause: err });
    case 'request.aborted':
    case 'request.size.invalid':
    case 'stream.encoding.set':
      return new HostError('invalid_input', 'The request body could not be read.', { cause: err });
  }
  const status = (err as { status?: unknown } | null)?.status;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    return new HostError('invalid_input', 'Bad request.', { cause: err });
  }
  if (isStoreUnavailable(err)) {
    return new HostError('store_unavailable', 'The database cannot take this right now. Try again shortly.', {
      cause: err,
    });
  }
  return new HostError('internal_error', 'Something went wrong on our side.', { cause: err });
}

function sendError(req: Request, res: Response, e: HostError, ref?: string, notFoundPage?: string): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  const body = {
    error: {
      code: e.code,
      message: e.message,
      ...(e.issues ? { issues: e.issues } : {}),
      ...(ref ? { ref } : {}),
    },
  };
  res.status(e.status);
  if (e.retryAfterSeconds !== undefined) res.setHeader('Retry-After', String(e.retryAfterSeconds));
  if (req.path.startsWith('/api/') || req.path === '/api' || !req.accepts('html')) {
    res.json(body);
    return;
  }
  // A page that is not there (a missing or deleted thread, a mistyped address): a page with a way back.
  if (e.code === 'not_found' && notFoundPage !== undefined) {
    res.type('html').send(notFoundPage);
    return;
  }
  res.type('text/plain').send(`${e.status} ${e.message}`);
}

const MAX_RETURN_PATH = 2048;
/**
 * `next` when it is a path on this site to return to after signing in, else undefined: it must start with one
 * `/` (never `//host` or `/\host`, which browsers read as another site), hold no backslash or control
 * character, and resolve to this origin.
 */
export function returnPath(next: unknown): string | undefined {
  if (typeof next !== 'string' || next.length === 0 || next.length > MAX_RETURN_PATH) return undefined;
  if (!next.startsWith('/') || next.startsWith('//') || next.includes('\\')) return undefined;
  for (let i = 0; i < next.length; i++) {
    const c = next.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return undefined; // browsers drop tabs and newlines: `/\t/host` is `//host`
  }
  try {
    const base = 'http://this-host.invalid';
    const url = new URL(next, base);
    return url.origin === base ? url.pathname + url.search : undefined;
  } catch {
    return undefined;
  }
}
