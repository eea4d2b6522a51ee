import { fork, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { HostError } from './errors.js';

/** Message the agent child sends over IPC once it listens. */
export interface AgentReadyMessage {
  type: 'ready';
  url: string;
  model: string;
  tracing: string;
}

/**
 * Variables the agent process may inherit from the host's environment: what Node and the OS need, proxy and
 * CA settings for reaching OpenAI, and the agent's own settings. Everything else (the host's secrets such as
 * TOOLS_TOKEN_SECRET and MONGODB_URI, and whatever else the host's environment holds) stays behind.
 */
const AGENT_ENV_NAMES = new Set([
  'PATH',
  'HOME',
  'TMPDIR',
  'TZ',
  'LANG',
  'LC_ALL',
  'NODE_ENV',
  'NODE_EXTRA_CA_CERTS',
  'NODE_USE_ENV_PROXY',
  'HTTP_PROXY',
  'HTTPS_PROXY',
  'NO_PROXY',
  'http_proxy',
  'https_proxy',
  'no_proxy',
  'DEBUG',
  'DEMO_MODEL_DELAY_MS',
  'THREADLINE_TRACING_ENDPOINT',
]);
/** Prefixes passed through: the OpenAI SDK's and the Agents SDK's settings (keys, base URL, tracing, logging). */
const AGENT_ENV_PREFIXES = ['OPENAI_'];

/**
 * The environment of the agent process: the allowed variables of `hostEnv` (see {@link AGENT_ENV_NAMES}) plus
 * the settings the host decides (`settings` win).
 *
 * @example
 * fork('dist/agent.js', [], { env: agentEnvironment(process.env, { AGENT_PORT: '3001', ... }) });
 */
export function agentEnvironment(
  hostEnv: NodeJS.ProcessEnv,
  settings: Record<string, string | undefined>,
): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(hostEnv)) {
    if (value === undefined) continue;
    if (AGENT_ENV_NAMES.has(name) || AGENT_ENV_PREFIXES.some((p) => name.startsWith(p))) env[name] = value;
  }
  for (const [name, value] of Object.entries(settings)) {
    if (value === undefined) delete env[name];
    else env[name] = value;
  }
  return env;
}

/** Bounds of {@link AgentProcess}, with their defaults. */
export interface AgentProcessOptions {
  /** The agent entry script (dist/agent.js). */
  entry: string;
  /**
   * The child's whole environment (secrets travel here, never on the command line); build it with
   * {@link agentEnvironment} so that the host's own secrets stay out.
   */
  env: NodeJS.ProcessEnv;
  /** How long the child may take to report `ready`. Default 20 s. */
  readyTimeoutMs?: number;
  /** Restarts allowed within `restartWindowMs` before giving up. Default 5 in 60 s. */
  maxRestarts?: number;
  restartWindowMs?: number;
  /** First restart delay, doubled per restart in the window up to 5 s. Default 200 ms. */
  restartDelayMs?: number;
  /** How long the child may take to stop after SIGTERM before SIGKILL. Default 10 s. */
  stopTimeoutMs?: number;
  /** Where the child's output goes. Default: inherited. */
  stdio?: 'inherit' | 'pipe';
  logger?: Pick<Console, 'error' | 'log'>;
}

/** State reported by {@link AgentProcess.state}. */
export type AgentProcessState = 'starting' | 'running' | 'restarting' | 'failed' | 'stopped';

/**
 * Runs the agent service as a separate Node process and keeps it running: when it dies unexpectedly it is
 * restarted with a growing delay, at most `maxRestarts` times per window, after which it stays down (runs then
 * fail with `agent_unreachable`) and the reason is logged. Emits `ready` (AgentReadyMessage) on every start
 * and `exit` on every exit.
 */
export class AgentProcess extends EventEmitter<{
  ready: [AgentReadyMessage];
  exit: [number | null, NodeJS.Signals | null];
}> {
  readonly #o: Required<Omit<AgentProcessOptions, 'logger'>> & { logger: Pick<Console, 'error' | 'log'> };
  #child: ChildProcess | undefined;
  #state: AgentProcessState = 'stopped';
  #restarts: number[] = [];
  #restartTimer: NodeJS.Timeout | undefined;
  #ready: AgentReadyMessage | undefined;

  constructor(options: AgentProcessOptions) {
    super();
    this.#o = {
      readyTimeoutMs: 20_000,
      maxRestarts: 5,
      restartWindowMs: 60_000,
      restartDelayMs: 200,
      stopTimeoutMs: 10_000,
      stdio: 'inherit',
      logger: console,
      ...options,
    };
  }

  get state(): AgentProcessState {
    return this.#state;
  }
  get pid(): number | undefined {
    return this.#child?.pid;
  }
  /** What the running child reported (URL, model, tracing verdict). */
  get info(): AgentReadyMessage | undefined {
    return this.#ready;
  }

  /** Starts the child and resolves once it listens. Rejects with HostError `internal_error` if it cannot. */
  start(): Promise<AgentReadyMessage> {
    this.#state = 'starting';
    const child = fork(this.#o.entry, [], {
      env: this.#o.env,
      stdio:
        this.#o.stdio === 'inherit'
          ? ['ignore', 'inherit', 'inherit', 'ipc']
          : ['ignore', 'pipe', 'pipe', 'ipc'],
      serialization: 'json',
    });
    this.#child = child;
    const ready = new Promise<AgentReadyMessage>((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(
          new HostError(
            'internal_error',
            `The agent service did not start within ${this.#o.readyTimeoutMs} ms.`,
          ),
        );
      }, this.#o.readyTimeoutMs);
      child.on('message', (m: unknown) => {
        const msg = m as Partial<AgentReadyMessage> | null;
        if (msg?.type !== 'ready' || typeof msg.url !== 'string') return;
        clearTimeout(timer);
        this.#ready = msg as AgentReadyMessage;
        this.#state = 'running';
        this.emit('ready', this.#ready);
        resolve(this.#ready);
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(
          new HostError(
            'internal_error',
            `The agent service exited during start (code ${code}, signal ${signal}).`,
          ),
        );
      });
    });
    child.once('exit', (code, signal) => this.#onExit(child, code, signal));
    return ready;
  }

  #onExit(child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    // Listeners see the state this exit led to (restarting, failed or stopped).
    try {
      this.#afterExit(child, code, signal);
    } finally {
      this.emit('exit', code, signal);
    }
  }

  #afterExit(child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (this.#child !== child || this.#state === 'stopped') return;
    this.#child = undefined;
    this.#ready = undefined;
    const now = Date.now();
    this.#restarts = this.#restarts.filter((t) => now - t < this.#o.restartWindowMs);
    if (this.#restarts.length >= this.#o.maxRestarts) {
      this.#state = 'failed';
      this.#o.logger.error(
        `agent service: exited (code ${code}, signal ${signal}) ${this.#restarts.length + 1} times within ${this.#o.restartWindowMs / 1000} s; not restarting. Runs will fail until the host is restarted.`,
      );
      return;
    }
    const delay = Math.min(this.#o.restartDelayMs * 2 ** this.#restarts.length, 5_000);
    this.#restarts.push(now);
    this.#state = 'restarting';
    this.#o.logger.error(`agent service: exited (code ${code}, signal ${signal}); restarting in ${delay} ms`);
    this.#restartTimer = setTimeout(() => {
      this.start().catch((err: unknown) =>
        this.#o.logger.error(`agent service: restart failed: ${(err as Error).message}`),
      );
    }, delay);
  }

  /** Stops the child (SIGTERM, then SIGKILL after `stopTimeoutMs`) and stops restarting it. */
  async stop(): Promise<void> {
    this.#state = 'stopped';
    clearTimeout(this.#restartTimer);
    const child = this.#child;
    this.#child = undefined;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => child.kill('SIGKILL'), this.#o.stopTimeoutMs);
      child.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
      child.kill('SIGTERM');
    });
  }
}
