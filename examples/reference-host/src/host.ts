import { createRequire } from 'node:module';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import { join } from 'node:path';
import proxyAddr from 'proxy-addr';
import { MongoClient } from 'mongodb';
import pg from 'pg';
import { createRelay, httpAgentTransport } from '@threadline/relay';
import { createAgUiHandler, toNodeListener } from '@threadline/relay/ag-ui';
import type {
  AgentTransport,
  EventStore,
  Relay,
  RelayLimits,
  RelayTuning,
  ThreadPubSub,
} from '@threadline/relay';
import { openSqliteStore } from '@threadline/relay/sqlite';
import { openMongoStore } from '@threadline/relay/mongodb';
import { openPostgresStore } from '@threadline/relay/postgres';
import { attachWebSocketServer } from '@threadline/relay/ws';
import {
  openRedisLimits,
  openRedisPubSub,
  type RedisLimits,
  type RedisPubSub,
} from '@threadline/relay/redis';
import {
  BUILTIN_TOOLS,
  createTokenIssuer,
  createToolRouter,
  defineTool,
  type ToolStore,
} from '@threadline/tools-kit';
import { toolRouterMiddleware } from '@threadline/tools-kit/express';
import { z } from 'zod';
import { createApp, type AppLimits } from './app.js';
import { approvalsFromLog } from './approvals.js';
import { EXAMPLE_ROOT, type HostConfig } from './config.js';
import { oidcRoutes, type OidcLimits } from './oidc.js';
import { MessageQuota, withMessageQuota } from './quotas.js';
import { HostError } from './errors.js';
import { agentProbe, postgresProbe, type AgentHealth } from './readiness.js';
import { loadSecrets, type HostSecrets } from './secrets.js';
import { allowedOrigins } from './security.js';
import { Sessions } from './sessions.js';
import { startRetention } from './retention.js';
import { storeHealth, watchUserStore, type StoreHealth } from './store-health.js';
import { MongoUserStore } from './users/mongo-user-store.js';
import { PostgresUserStore } from './users/postgres-user-store.js';
import { SqliteUserStore } from './users/sqlite-user-store.js';
import type { UserStore } from './users/user-store.js';

/** Options of {@link startHost}. */

/** Empties the user's profile. It needs the user's approval: the run waits for their Approve or Reject. */
function profileClearTool(store: Pick<ToolStore, 'getProfile' | 'patchProfile'>) {
  return defineTool({
    name: 'profile.clear',
    description: "Clear everything stored in the user's profile (their name and preferences).",
    input: z.strictObject({}),
    output: z.strictObject({ cleared: z.array(z.string()) }),
    needsApproval: true,
    async handler(_input, ctx) {
      const profile = await store.getProfile(ctx.userId);
      const keys = Object.keys(profile);
      const patch = Object.fromEntries(keys.map((k) => [k, null]));
      const next = keys.length > 0 ? await store.patchProfile(ctx.userId, patch) : {};
      await ctx.emit({
        type: 'STATE_CHANGED',
        threadId: ctx.threadId,
        runId: ctx.runId,
        ts: Date.now(),
        scope: 'profile',
        value: next,
      });
      return { cleared: keys };
    },
  });
}

export interface HostOptions {
  config: HostConfig;
  /** Default: the given settings, else `DATA_DIR/secrets.json` (generated on first start). */
  secrets?: HostSecrets;
  /** How the relay reaches the agent. Default: HTTP/SSE to the agent service on 127.0.0.1:AGENT_PORT. */
  agent?: AgentTransport;
  limits?: Partial<AppLimits>;
  /** Bounds of Google sign-in (how long a sign-in may take, starts per address, provider timeout). */
  oidcLimits?: Partial<OidcLimits>;
  /** Relay bounds beyond those the settings give (per-user run shares come from `config`). */
  relayLimits?: Partial<RelayLimits & RelayTuning>;
  /** Extra facts for GET /healthz (main adds the agent process state). */
  health?: () => Record<string, unknown>;
  /**
   * Whether the agent answers, for GET /healthz. Default: a probe of the agent service's /healthz when the
   * agent is reached over HTTP on AGENT_PORT; always up with a custom `agent` transport.
   */
  agentHealth?: () => Promise<AgentHealth>;
  logger?: Pick<Console, 'error' | 'warn'>;
}

/** A running host. */
export interface Host {
  /** The URL to open, e.g. http://localhost:3000. */
  url: string;
  port: number;
  /** Which store holds threads, users and sessions. */
  storeName: StoreName;
  /** How events reach subscribers: in this process only, or through Redis to every instance (REDIS_URL). */
  pubsubName: 'in-process' | 'redis';
  /** Where the SQLite files live (sqlite only). */
  dataDir: string;
  relay: Relay;
  /** Runs the previous process left unfinished and that were failed at start. */
  recovered: number;
  /** Whether the stores can write (`degraded` after a failed write until one succeeds), for `/healthz`. */
  storeHealth(): StoreHealth;
  close(): Promise<void>;
}

/** Which database holds threads, events, runs, users and sessions. */
export type StoreName = 'sqlite' | 'mongodb' | 'postgres';

/** A connection string without its password, for logs and the banner: `postgres://app@db:5432/app`. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    u.search = '';
    return u.toString();
  } catch {
    return '(invalid URL)';
  }
}

/** Name the relay mints act-as tokens under and the tool router requires. */
export const TOKEN_ISSUER = 'threadline-reference-host';

const webComponentBundle = (): string | undefined => {
  try {
    return createRequire(import.meta.url).resolve('@threadline/web-component/agent-chat.js');
  } catch {
    return undefined;
  }
};

/**
 * Starts the API: stores, auth, REST, pages, the tool endpoints and the relay with its WebSocket at /ws.
 * The agent service is not started here (main.ts runs it as a separate process).
 *
 * @example
 * const host = await startHost({ config: readConfig(process.env) });
 * console.log(host.url);
 */
export async function startHost(options: HostOptions): Promise<Host> {
  const { config } = options;
  const logger = options.logger ?? console;
  const secrets =
    options.secrets ??
    loadSecrets(config.dataDir, {
      toolsTokenSecret: config.toolsTokenSecret,
      agentSharedSecret: config.agentSharedSecret,
    });

  let mongo: MongoClient | undefined;
  let pool: pg.Pool | undefined;
  let store: EventStore & ToolStore;
  let userStore: UserStore;
  let pubsub: RedisPubSub | undefined;
  let sharedLimits: RedisLimits | undefined;
  if (config.databaseUrl !== undefined) {
    // One bounded pool for the relay's store and the users store. Calls wait at most 5 s for a connection,
    // and no statement runs longer than 30 s: with the server down, calls fail (503) instead of piling up.
    pool = new pg.Pool({
      connectionString: config.databaseUrl,
      max: 10,
      connectionTimeoutMillis: 5_000,
      statement_timeout: 30_000,
      query_timeout: 35_000,
      idleTimeoutMillis: 30_000,
      keepAlive: true,
      application_name: 'threadline-reference-host',
    });
    // An idle connection dying (the server restarted) is dropped by the pool; without a listener it would crash.
    pool.on('error', () => {});
    try {
      store = await openPostgresStore({ pool });
      userStore = await PostgresUserStore.open(pool);
    } catch (error) {
      await pool.end().catch(() => {});
      throw new HostError(
        'invalid_config',
        `Cannot open PostgreSQL at ${redactUrl(config.databaseUrl)} (DATABASE_URL): ${(error as Error).message}`,
        { cause: error },
      );
    }
  } else if (config.mongodbUri !== undefined) {
    mongo = new MongoClient(config.mongodbUri, { serverSelectionTimeoutMS: 10_000 });
    await mongo.connect();
    store = await openMongoStore({ client: mongo, dbName: config.mongodbDb });
    userStore = await MongoUserStore.open(mongo.db(config.mongodbDb));
  } else {
    store = openSqliteStore({ path: join(config.dataDir, 'threadline.db') });
    userStore = new SqliteUserStore(join(config.dataDir, 'users.db'));
  }
  if (config.redisUrl !== undefined) {
    try {
      pubsub = await openRedisPubSub({ url: config.redisUrl, store, logger });
      // Per-user bounds (sockets, runs, message bytes) counted across every instance.
      sharedLimits = await openRedisLimits({ url: config.redisUrl, logger });
    } catch (error) {
      await pubsub?.close().catch(() => {});
      await store.close().catch(() => {});
      await userStore.close().catch(() => {});
      await pool?.end().catch(() => {});
      await mongo?.close().catch(() => {});
      throw new HostError(
        'invalid_config',
        `Cannot connect to Redis (REDIS_URL): ${(error as Error).message}`,
        { cause: error },
      );
    }
  }
  // Every user store write is watched, so /healthz can say `degraded` when it fails (e.g. a full disk).
  const { users, state: usersState } = watchUserStore(userStore);

  const server: Server = createServer();
  // The relay needs the real port (the agent calls the tools back on it), so listen before wiring.
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const loopback = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
  const toolsBaseUrl =
    config.toolsBaseUrl ?? `http://${loopback.includes(':') ? `[${loopback}]` : loopback}:${port}`;
  const origins = allowedOrigins(config.publicOrigin, port);

  const tokens = createTokenIssuer({ secret: secrets.toolsTokenSecret, issuer: TOKEN_ISSUER });
  const agentUrl = config.agentUrl ?? `http://127.0.0.1:${config.agentPort}`;
  const agent =
    options.agent ??
    httpAgentTransport({
      url: agentUrl,
      credential: secrets.agentSharedSecret,
      // A message sent while the agent (re)starts waits for it instead of failing at once.
      waitForAgentMs: config.agentWaitMs,
    });
  const agentHealth =
    options.agentHealth ??
    (options.agent
      ? async (): Promise<AgentHealth> => ({ up: true })
      : agentProbe(agentUrl, secrets.agentSharedSecret));
  // Ready once the store is open, runs the last process left are settled, and the agent has answered: until
  // then /healthz says "starting"; an agent that answered once and stopped makes it "degraded".
  let started = false;
  let agentSeenUp = false;
  const databaseProbe = pool ? postgresProbe(pool) : undefined;
  // `profile.clear` empties the user's profile: the run pauses until they approve (the demo model calls it for
  // "forget me"). The tool router serves these and the built-in tools; every run's token allows all of them.
  // The relay comes first: the router hands the events tools emit to `relay.toolEvents`.
  const hostTools = [profileClearTool(store)];
  const toolNames = [...Object.values(BUILTIN_TOOLS), ...hostTools.map((tool) => tool.name)];
  const relay = createRelay({
    store,
    agent,
    cluster: {
      ...(pubsub ? { pubsub: pubsub as ThreadPubSub } : {}),
      // On a shared database each instance holds leases under its own name, so a starting instance fails only
      // runs whose owner is gone, never a sibling's (the name is stable across restarts of this instance).
      ...(pool ? { instanceId: `${hostname()}:${port}` } : {}),
      ...(sharedLimits ? { userShares: sharedLimits } : {}),
    },
    tokens,
    toolsBaseUrl,
    tools: toolNames,
    limits: {
      maxRunsPerUser: config.runsPerUser,
      maxRunStartsPerUser: config.runsPerMinute,
      runStartWindowMs: 60_000,
      approvalTtlMs: config.approvalTtlMs,
      ...options.relayLimits,
    },
  });

  const toolRouter = createToolRouter({
    tokens,
    store,
    tools: hostTools,
    // A token dies with its run: once the run has ended (or if it never existed) its calls are refused.
    isRunActive: async ({ runId, threadId, userId }) => {
      const run = await store.getRun(runId);
      return run?.status === 'running' && run.threadId === threadId && run.userId === userId;
    },
    // A tool that needs approval runs only for a call the thread's owner approved (read from the log), even
    // when someone holding the run's act-as token calls it directly.
    approvals: approvalsFromLog(store),
    // Tool-emitted events (e.g. STATE_CHANGED from profile.patch) go into the thread's log and out to browsers.
    events: relay.toolEvents,
    logger,
  });
  // The relay's tokens allow exactly the tools the router serves.
  if ([...toolRouter.toolNames].sort().join() !== [...toolNames].sort().join())
    throw new Error(`the tool router serves ${toolRouter.toolNames.join(', ')}, not ${toolNames.join(', ')}`);

  const sessions = new Sessions(users, { ttlMs: config.sessionTtlMs, secure: config.cookieSecure });
  const storeName: StoreName = pool ? 'postgres' : mongo ? 'mongodb' : 'sqlite';
  const pubsubName = pubsub ? 'redis' : 'in-process';
  const app = createApp({
    users,
    store,
    threads: relay,
    sessions,
    isAllowedOrigin: (o) => origins.includes(o),
    tools: toolRouterMiddleware(toolRouter),
    // AG-UI clients (e.g. @ag-ui/client's HttpAgent) run the agent here, signed in with the session cookie.
    agUi: toNodeListener(
      createAgUiHandler(relay, {
        authenticate: async (request) => {
          const user = await sessions.userOf(request.headers.get('cookie') ?? undefined);
          return user ? { id: user.id } : null;
        },
        logger,
      }),
    ),
    ...(config.oidc
      ? {
          oidc: oidcRoutes({
            settings: {
              ...config.oidc,
              redirectUrl: config.oidc.redirectUrl ?? `http://localhost:${port}/auth/oidc/callback`,
            },
            users,
            sessions,
            secureCookies: config.cookieSecure,
            // Shared by every instance of a cluster, so any of them can finish a sign-in another started.
            secret: secrets.toolsTokenSecret,
            ...(options.oidcLimits ? { limits: options.oidcLimits } : {}),
            logger,
          }),
        }
      : {}),
    webComponentFile: webComponentBundle(),
    publicDir: join(EXAMPLE_ROOT, 'public'),
    hsts: config.cookieSecure,
    trustProxy: config.trustProxy,
    health: async () => {
      const [a, db] = await Promise.all([agentHealth(), databaseProbe?.()]);
      if (a.up) agentSeenUp = true;
      const stores = storeHealth(relay, usersState);
      // The store is degraded when its last write failed, or (PostgreSQL) when it does not answer now.
      const storeOk = stores.status === 'ok' && (db?.up ?? true);
      const status = !started
        ? 'starting'
        : a.up && storeOk
          ? 'ok'
          : agentSeenUp || !storeOk
            ? 'degraded'
            : 'starting';
      return {
        status,
        store: storeName,
        storeStatus: storeOk ? 'ok' : 'degraded',
        ...(db?.detail ? { storeDetail: db.detail } : {}),
        // Redis down does not make an instance unready: its own runs and subscribers still work, and
        // subscribers get what other instances stored (read from the database) once Redis is back.
        pubsub: pubsubName,
        ...(pubsub ? { pubsubStatus: pubsub.connected ? 'up' : 'down' } : {}),
        agent: a.up ? 'up' : 'down',
        ...(a.detail ? { agentDetail: a.detail } : {}),
        ...(stores.status === 'ok' ? {} : { stores }),
        ...options.health?.(),
      };
    },
    limits: { maxThreadsPerUser: config.maxThreadsPerUser, ...options.limits },
    logger,
  });
  server.on('request', app);
  // Browsers send through this view of the relay: each user's message text is budgeted per hour.
  const quota = new MessageQuota({ bytesPerWindow: config.messageBytesPerUserHour, windowMs: 3_600_000 });
  // The relay is the server's only 'upgrade' listener: it answers every upgrade (404 off /ws, 400 for a target
  // that is not a plain path), so no socket is left unanswered whatever order listeners would run in.
  const ws = attachWebSocketServer(server, withMessageQuota(relay, quota, sharedLimits), {
    path: '/ws',
    otherUpgrades: 'refuse',
    // Tell a signed-out browser so with close code 4401 (it cannot read an HTTP 401 on an upgrade).
    unauthorized: 'close',
    // A user past their share gets `error too_many_connections` and close 1013; others are unaffected.
    limits: { maxConnectionsPerUser: config.wsConnectionsPerUser },
    // With Redis the per-user (and per-address) socket bounds count every instance's sockets.
    ...(sharedLimits ? { counter: sharedLimits } : {}),
    // Signed-out sockets are bounded per client address: the same address REST limits use (TRUST_PROXY).
    addressOf: (req) => proxyAddr(req, app.get('trust proxy fn') as (addr: string, i: number) => boolean),
    allowedOrigins: origins,
    authenticate: async (req) => {
      const user = await sessions.userOfUpgrade(req);
      return user ? { id: user.id } : null;
    },
  });

  const recovered = await relay.recover();
  started = true;
  const sweep = setInterval(() => {
    users
      .deleteExpiredSessions(Date.now())
      .catch((err: unknown) => logger.warn('session sweep failed:', err));
  }, 3_600_000);
  sweep.unref();
  const retention =
    config.retentionDays === undefined
      ? undefined
      : startRetention({
          store,
          days: config.retentionDays,
          logger: { info: (...args) => console.info(...args), warn: (...args) => logger.warn(...args) },
        });

  let closing: Promise<void> | undefined;
  return {
    url: config.publicOrigin ?? `http://localhost:${port}`,
    port,
    storeName,
    pubsubName,
    dataDir: config.dataDir,
    relay,
    recovered,
    storeHealth: () => storeHealth(relay, usersState),
    close: () =>
      (closing ??= (async () => {
        clearInterval(sweep);
        retention?.stop();
        await ws.close();
        await relay.close();
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
        });
        await pubsub?.close();
        await sharedLimits?.close();
        await store.close();
        await users.close();
        await pool?.end();
        await mongo?.close();
      })()),
  };
}
