// One configuration-error code across packages: every public factory refuses a wrong option with its package's
// error class and code `invalid_options`, before it connects or listens anywhere.
import { createServer } from 'node:http';
import { describe, expect, it } from 'vitest';
import { AgentRunnerError, createAgentServer, createRunner } from '@threadline/agent-runner';
import { RelayError, createRelay, httpAgentTransport, inProcessAgentTransport } from '@threadline/relay';
import { createAgUiHandler } from '@threadline/relay/ag-ui';
import { createMemoryStore } from '@threadline/relay/memory';
import { openMongoStore } from '@threadline/relay/mongodb';
import { openPostgresStore } from '@threadline/relay/postgres';
import { openRedisPubSub } from '@threadline/relay/redis';
import { openSqliteStore } from '@threadline/relay/sqlite';
import { attachWebSocketServer } from '@threadline/relay/ws';
import {
  MemoryToolStore,
  ToolsKitError,
  createTokenIssuer,
  createToolClient,
  createToolRouter,
} from '@threadline/tools-kit';

type ErrorClass = abstract new (...args: never[]) => Error;

async function refusal(make: () => unknown): Promise<unknown> {
  try {
    await make();
  } catch (error) {
    return error;
  }
  throw new Error('the factory accepted a wrong option');
}

const secret = 'x'.repeat(32);
const tokens = createTokenIssuer({ secret, issuer: 'options-test' });
const relay = () => createRelay(baseRelayOptions());

const cases: [string, ErrorClass, () => unknown][] = [
  ['createRelay', RelayError, () => createRelay({ ...baseRelayOptions(), limits: { maxActiveRuns: -1 } })],
  [
    'createRelay instanceId',
    RelayError,
    () => createRelay({ ...baseRelayOptions(), instanceId: 'has space' }),
  ],
  [
    'attachWebSocketServer',
    RelayError,
    () => attachWebSocketServer(createServer(), relay(), { authenticate: 'nope' } as never),
  ],
  [
    'attachWebSocketServer limits',
    RelayError,
    () =>
      attachWebSocketServer(createServer(), relay(), {
        authenticate: async () => null,
        allowedOrigins: [],
        limits: { maxFrameBytes: 0 },
      }),
  ],
  [
    'attachWebSocketServer tuning',
    RelayError,
    () =>
      attachWebSocketServer(createServer(), relay(), {
        authenticate: async () => null,
        allowedOrigins: [],
        tuning: { heartbeatIntervalMs: 0 },
      }),
  ],
  ['httpAgentTransport', RelayError, () => httpAgentTransport({ url: 'ftp://x', credential: secret })],
  ['createAgUiHandler', RelayError, () => createAgUiHandler(relay(), {} as never)],
  ['openSqliteStore', RelayError, () => openSqliteStore({ path: '' })],
  ['openPostgresStore', RelayError, () => openPostgresStore({} as never)],
  ['openMongoStore', RelayError, () => openMongoStore({ dbName: 'x' } as never)],
  ['openRedisPubSub', RelayError, () => openRedisPubSub({ url: 'http://127.0.0.1:1' } as never)],
  ['createRunner', AgentRunnerError, () => createRunner({ localTools: 'all' as never })],
  ['createRunner tuning', AgentRunnerError, () => createRunner({ tuning: { maxTurns: 0 } })],
  [
    'createRunner tuning, deprecated top-level spelling',
    AgentRunnerError,
    () => createRunner({ maxTurns: 0 }),
  ],
  [
    'createAgentServer',
    AgentRunnerError,
    () => createAgentServer(createRunner(), { auth: { sharedSecret: 'short' } }),
  ],
  [
    'createAgentServer limits',
    AgentRunnerError,
    () => createAgentServer(createRunner(), { auth: { sharedSecret: secret }, maxBodyBytes: -5 }),
  ],
  ['createToolRouter', ToolsKitError, () => createToolRouter({ tools: [] } as never)],
  [
    'createToolClient',
    ToolsKitError,
    () => createToolClient({ baseUrl: 'ftp://x', token: 't', threadId: 't' }),
  ],
  ['createTokenIssuer', ToolsKitError, () => createTokenIssuer({ secret, issuer: '' })],
  ['MemoryToolStore', ToolsKitError, () => new MemoryToolStore({ maxSessionItems: 0 })],
];

function baseRelayOptions() {
  return {
    store: createMemoryStore(),
    agent: inProcessAgentTransport({ run: async function* () {} } as never),
    tokens,
    toolsBaseUrl: 'http://127.0.0.1:1',
    tools: [],
  };
}

describe('every factory refuses a wrong option with code invalid_options', () => {
  it.each(cases)('%s', async (_name, cls, make) => {
    const error = await refusal(make);
    expect(error).toBeInstanceOf(cls);
    expect(error).toMatchObject({ code: 'invalid_options' });
  });
});
