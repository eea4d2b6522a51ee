// The whole host in one test process: real HTTP and WebSocket on 127.0.0.1, real SQLite files in a fresh
// directory, and an agent transport of the test's choice (usually the runner in process on the demo model).
// The separate-process topology is covered by the tests that spawn the host (user-host.ts).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  createDemoModelProvider,
  createRunner,
  type AgentRunner,
  type AgentRunnerOptions,
} from '@threadline/agent-runner';
import type { AgentTransport } from '@threadline/relay';
import { readConfig } from '../src/config.js';
import { startHost, type Host } from '../src/host.js';
import { loadSecrets, type HostSecrets } from '../src/secrets.js';

/** An agent runner on the offline demo model (streaming every `delayMs`), no tracing, errors to the console. */
export function demoRunner(delayMs = 0, options: Partial<AgentRunnerOptions> = {}): AgentRunner {
  return createRunner({
    modelProvider: createDemoModelProvider({ delayMs }),
    model: 'demo',
    tracing: false,
    logger: { info: () => {}, warn: () => {}, error: console.error },
    ...options,
  });
}

export interface InProcessHost {
  host: Host;
  /** `http://127.0.0.1:<port>` */
  base: string;
  /** The host's data directory (its SQLite file and generated secrets). */
  dir: string;
  secrets: HostSecrets;
  /** Closes the host and removes its directory. */
  close(): Promise<void>;
}

/** Starts the host with the settings `env` (on top of free ports and a fresh data directory) and `agent`. */
export async function startInProcessHost(
  agent: AgentTransport,
  env: Record<string, string> = {},
): Promise<InProcessHost> {
  const dir = mkdtempSync(join(tmpdir(), 'tl-host-'));
  const config = readConfig({ PORT: '0', AGENT_PORT: '0', DATA_DIR: dir, ...env });
  const secrets = loadSecrets(dir);
  const host = await startHost({ config, secrets, agent, logger: { error: () => {}, warn: () => {} } });
  return {
    host,
    base: `http://127.0.0.1:${host.port}`,
    dir,
    secrets,
    async close() {
      await host.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
