import { createServer, type Server as HttpServer } from 'node:http';
import type { AddressInfo, Server as NetServer } from 'node:net';
import { doctor, formatDoctorReport } from './doctor.js';
import { speakBoth } from './dual-protocol.js';
import type { AgentRunner } from './runner-options.js';
import { AGENT_SERVER_DEFAULTS, createAgentServer, type AgentServerOptions } from './server.js';

/** Interface `serveAgent` listens on unless told otherwise: loopback, so nothing is exposed by accident. */
const DEFAULT_HOST = '127.0.0.1';

/** Options of {@link serveAgent}. */
export interface ServeAgentOptions extends AgentServerOptions {
  /** Port to listen on (default 0: any free port). */
  port?: number;
  /** Interface to listen on (default 127.0.0.1). */
  host?: string;
  /** Run `doctor` at start and log what it finds (default true). */
  doctor?: boolean;
  /**
   * Also speak cleartext HTTP/2 with prior knowledge (h2c) on the same port (default true): a client that opens
   * with the HTTP/2 preface gets an HTTP/2 session that carries all its runs as streams of one connection;
   * anything else is served as HTTP/1.1. `false`: HTTP/1.1 only. A connection that has not shown which protocol
   * it speaks within `bodyTimeoutMs` is closed.
   */
  http2?: boolean;
}

/** A listening agent service. */
export interface ServedAgent {
  url: string;
  port: number;
  /** Number of runs streaming now. */
  activeRuns(): number;
  /**
   * Graceful shutdown: see {@link AgentServer.close}; then closes every HTTP/1.1 connection and HTTP/2 session,
   * and the listener.
   */
  close(options?: { deadlineMs?: number }): Promise<void>;
}

/**
 * Starts the agent service on a port: {@link createAgentServer} plus a listener, with `doctor` logged at start.
 * The port speaks HTTP/1.1 and cleartext HTTP/2 (h2c, prior knowledge) unless `http2: false`.
 *
 * @example
 * const served = await serveAgent(createRunner(), { auth: { sharedSecret: secret }, port: 8787 });
 * process.on('SIGTERM', () => void served.close({ deadlineMs: 10_000 }));
 */
export async function serveAgent(runner: AgentRunner, options: ServeAgentOptions): Promise<ServedAgent> {
  const logger = options.logger ?? console;
  const host = options.host ?? DEFAULT_HOST;
  const app = createAgentServer(runner, options);
  const h1Server = createServer(app.handler);
  h1Server.requestTimeout = 0; // runs stream for minutes; body reads have their own bound
  const h2 =
    options.http2 !== false
      ? speakBoth(h1Server, app.handler, {
          maxStreams: options.maxConcurrentRuns ?? AGENT_SERVER_DEFAULTS.maxConcurrentRuns,
          sniffMs: options.bodyTimeoutMs ?? AGENT_SERVER_DEFAULTS.bodyTimeoutMs,
          logger,
        })
      : null;
  const listener: NetServer | HttpServer = h2?.listener ?? h1Server;
  await new Promise<void>((resolve, reject) => {
    listener.once('error', reject);
    listener.listen(options.port ?? 0, host, () => {
      listener.off('error', reject);
      resolve();
    });
  });
  // Errors of the listening socket (e.g. EMFILE on accept) are logged, never thrown.
  listener.on('error', (error) => logger.error('[threadline-agent] listener error', error));
  const { port } = listener.address() as AddressInfo;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  if (options.doctor !== false) {
    const report = doctor();
    const log = report.ok ? logger.info : logger.warn;
    log.call(logger, formatDoctorReport(report));
  }
  logger.info(`[threadline-agent] listening on ${url}${h2 ? ' (HTTP/1.1 and h2c)' : ''}`);
  let closed: Promise<void> | null = null;
  return {
    url,
    port,
    activeRuns: app.activeRuns,
    close(closeOptions) {
      closed ??= (async () => {
        const listening = new Promise<void>((resolve) => listener.close(() => resolve()));
        h2?.closeIdle();
        await app.close(closeOptions);
        h2?.closeAll();
        h1Server.closeAllConnections();
        await listening;
      })();
      return closed;
    },
  };
}
