// `npm start`: validates the settings, starts the agent service as a separate process (unless AGENT_URL names
// one already running) and the API, prints where to go, and stops both on Ctrl-C.
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { AgentProcess, agentEnvironment } from './agent-process.js';
import { readConfig, type HostConfig } from './config.js';
import { HostError } from './errors.js';
import { redactUrl, startHost, type Host } from './host.js';
import { loadSecrets } from './secrets.js';

function fail(err: unknown): never {
  if (err instanceof HostError) console.error(err.message);
  else if ((err as NodeJS.ErrnoException)?.code === 'EADDRINUSE') {
    console.error(`Port in use: ${(err as Error).message}. Set PORT (and AGENT_PORT) to free ports.`);
  } else console.error(err);
  process.exit(1);
}

/** A free TCP port on 127.0.0.1 (for AGENT_PORT=0: the agent keeps the same port across restarts). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

if (existsSync('.env')) process.loadEnvFile('.env');

let config: HostConfig;
try {
  config = readConfig(process.env);
} catch (err) {
  fail(err);
}
const secrets = loadSecrets(config.dataDir, {
  toolsTokenSecret: config.toolsTokenSecret,
  agentSharedSecret: config.agentSharedSecret,
});
// With AGENT_URL the agent service runs elsewhere (its own processes, maybe behind a load balancer).
const external = config.agentUrl !== undefined;
const agentPort = external ? config.agentPort : config.agentPort === 0 ? await freePort() : config.agentPort;

const agent = external
  ? undefined
  : new AgentProcess({
      entry: fileURLToPath(new URL('./agent.js', import.meta.url)),
      // Only what the agent needs: never the host's secrets (TOOLS_TOKEN_SECRET, MONGODB_URI, ...).
      env: agentEnvironment(process.env, {
        AGENT_PORT: String(agentPort),
        AGENT_SHARED_SECRET: secrets.agentSharedSecret,
        OPENAI_API_KEY: config.openaiApiKey,
        OPENAI_BASE_URL: config.openaiBaseUrl,
        AGENT_MAX_RUNS: String(config.agentMaxRuns),
        OPENAI_MODEL: config.openaiModel,
        COMPACT_AFTER_ITEMS: config.compactAfterItems?.toString(),
      }),
    });

let host: Host | undefined;
let stopping = false;
async function shutdown(code: number): Promise<void> {
  if (stopping) {
    // A second Ctrl-C means "now".
    process.exit(1);
  }
  stopping = true;
  console.log('\nStopping…');
  await Promise.allSettled([host?.close(), agent?.stop()]);
  process.exit(code);
}
process.on('SIGINT', () => void shutdown(0));
process.on('SIGTERM', () => void shutdown(0));

try {
  const [ready, started] = await Promise.all([
    agent?.start(),
    startHost({
      config: { ...config, agentPort },
      secrets,
      ...(agent ? { health: () => ({ agentProcess: agent.state }) } : {}),
    }),
  ]);
  host = started;
  const store =
    host.storeName === 'sqlite'
      ? `SQLite in ${host.dataDir}`
      : host.storeName === 'postgres'
        ? `PostgreSQL at ${redactUrl(config.databaseUrl!)}`
        : `MongoDB (database ${config.mongodbDb})`;
  console.log(
    [
      '',
      'Threadline reference host',
      `  Open     ${host.url}`,
      ...(host.url === `http://localhost:${host.port}` ? [] : [`  Listen   ${config.host}:${host.port}`]),
      `  Store    ${store}`,
      ...(config.oidc ? [`  Sign-in  password, or Google/OpenID Connect at ${config.oidc.issuer}`] : []),
      `  Fan-out  ${config.redisUrl ? `Redis at ${redactUrl(config.redisUrl)}` : 'in this process'}`,
      ...(ready
        ? [
            `  Model    ${ready.model}`,
            `  Agent    separate process at ${ready.url} (pid ${agent!.pid})`,
            `  Tracing  ${ready.tracing}`,
          ]
        : [`  Agent    service at ${config.agentUrl} (AGENT_URL)`]),
      ...(host.recovered > 0
        ? [`  Recovered ${host.recovered} run(s) left unfinished by the last stop`]
        : []),
      '',
      'Press Ctrl-C to stop.',
    ].join('\n'),
  );
} catch (err) {
  await Promise.allSettled([host?.close(), agent?.stop()]);
  fail(err);
}
