// attachWebSocketServer's options: `limits` (how many sockets) and `tuning` (how each socket is policed and timed),
// the tuning keys still taken in `limits` for one release, and a refusal with invalid_options for a wrong value.
import { createServer } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import {
  attachWebSocketServer,
  DEFAULT_WEBSOCKET_LIMITS,
  DEFAULT_WEBSOCKET_TUNING,
  type WebSocketServerOptions,
} from '@threadline/relay/ws';
import * as ws from '@threadline/relay/ws';
import * as main from '@threadline/relay';
import { RelayError } from '../src/errors.js';
import { makeRelay, makeWsHarness, TestClient } from './helpers.js';

type WsHarness = Awaited<ReturnType<typeof makeWsHarness>>;
let h: WsHarness | undefined;
const clients: TestClient[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await h?.cleanup();
  h = undefined;
});

async function connect(): Promise<TestClient> {
  const c = new TestClient(h!.url, 'user-a');
  clients.push(c);
  await c.opened;
  return c;
}

/** Sends a frame of `bytes` bytes and says how the server took it: closed with 1009, or answered. */
async function frameOf(bytes: number): Promise<'closed 1009' | 'answered'> {
  const c = await connect();
  c.send('x'.repeat(bytes));
  const outcome = await Promise.race([
    c.closed.then((x) => (x.code === 1009 ? ('closed 1009' as const) : `closed ${x.code}`)),
    c.waitFor((m) => m.type === 'error').then(() => 'answered' as const),
  ]);
  if (outcome !== 'closed 1009' && outcome !== 'answered') throw new Error(outcome);
  return outcome;
}

const frameOptions: [string, Partial<WebSocketServerOptions>][] = [
  ['tuning', { tuning: { maxFrameBytes: 1024 } }],
  ['limits (deprecated spelling)', { limits: { maxFrameBytes: 1024 } }],
];

describe('attachWebSocketServer: tuning, and the tuning keys in limits for one release', () => {
  it.each(frameOptions)(
    'takes maxFrameBytes in %s: 1024 bytes pass, 1025 close with 1009',
    async (_, options) => {
      h = await makeWsHarness('memory', {}, options);
      expect(await frameOf(1024)).toBe('answered');
      expect(await frameOf(1025)).toBe('closed 1009');
    },
  );

  it('prefers tuning over the deprecated key in limits when both are given', async () => {
    h = await makeWsHarness(
      'memory',
      {},
      { limits: { maxFrameBytes: 1024 }, tuning: { maxFrameBytes: 4096 } },
    );
    expect(await frameOf(4096)).toBe('answered');
    expect(await frameOf(4097)).toBe('closed 1009');
  });

  it('keeps the default for a key given as undefined: a bound is never switched off', async () => {
    const max = DEFAULT_WEBSOCKET_TUNING.maxFrameBytes;
    // As a JavaScript host may pass a setting it left unconfigured.
    const unset = { maxFrameBytes: undefined } as never;
    h = await makeWsHarness('memory', {}, { limits: unset, tuning: unset });
    expect(await frameOf(max)).toBe('answered');
    expect(await frameOf(max + 1)).toBe('closed 1009');
  });

  it('splits the fourteen old limits into three limits and eleven tuning knobs', () => {
    const limits = Object.keys(DEFAULT_WEBSOCKET_LIMITS);
    const tuning = Object.keys(DEFAULT_WEBSOCKET_TUNING);
    expect(limits).toEqual(['maxConnections', 'maxConnectionsPerUser', 'maxUnauthenticatedPerAddress']);
    expect(tuning).toHaveLength(11);
    expect(tuning.filter((k) => limits.includes(k))).toEqual([]);
  });
});

describe('attachWebSocketServer refuses a wrong limit or tuning value with invalid_options', () => {
  const wrong: [string, Partial<WebSocketServerOptions>, RegExp][] = [
    [
      'tuning below 1',
      { tuning: { heartbeatIntervalMs: 0 } },
      /tuning\.heartbeatIntervalMs must be an integer of at least 1, got 0/,
    ],
    ['tuning not an integer', { tuning: { messageBurst: 1.5 } }, /tuning\.messageBurst must be an integer/],
    [
      'tuning not a number',
      { tuning: { highWaterBytes: '1' as never } },
      /tuning\.highWaterBytes must be an integer/,
    ],
    [
      'a limit in tuning',
      { tuning: { maxConnections: 5 } as never },
      /tuning\.maxConnections is not a known option/,
    ],
    ['an unknown key in tuning', { tuning: { nope: 5 } as never }, /tuning\.nope is not a known option/],
    ['tuning not an object', { tuning: 5 as never }, /tuning must be an object/],
    [
      'a limit below 1',
      { limits: { maxConnections: 0 } },
      /limits\.maxConnections must be an integer of at least 1/,
    ],
    [
      'a deprecated key below 1',
      { limits: { maxFrameBytes: 0 } },
      /limits\.maxFrameBytes must be an integer of at least 1/,
    ],
  ];

  it.each(wrong)('%s', async (_, options, message) => {
    const { relay, cleanup } = await makeRelay('memory');
    try {
      const attach = () =>
        attachWebSocketServer(createServer(), relay, {
          authenticate: async () => null,
          allowedOrigins: [],
          ...options,
        });
      expect(attach).toThrow(RelayError);
      expect(attach).toThrow(message);
      expect(() => attach()).toThrow(expect.objectContaining({ code: 'invalid_options' }) as Error);
    } finally {
      await cleanup();
    }
  });

  it('takes the smallest value, 1, for every tuning knob and limit', async () => {
    const { relay, cleanup } = await makeRelay('memory');
    try {
      const ones = (o: object) => Object.fromEntries(Object.keys(o).map((k) => [k, 1]));
      const ws = attachWebSocketServer(createServer(), relay, {
        authenticate: async () => null,
        allowedOrigins: [],
        limits: ones(DEFAULT_WEBSOCKET_LIMITS),
        tuning: ones(DEFAULT_WEBSOCKET_TUNING),
      });
      await ws.close();
    } finally {
      await cleanup();
    }
  });
});

describe('the main entry keeps the WebSocket exports for one release (deprecated)', () => {
  it('exports the same values as @threadline/relay/ws', () => {
    expect(main.attachWebSocketServer).toBe(ws.attachWebSocketServer);
    expect(main.upgradePath).toBe(ws.upgradePath);
    expect(main.WS_CLOSE_CODES).toBe(ws.WS_CLOSE_CODES);
    expect(main.MemoryConnectionCounter).toBe(ws.MemoryConnectionCounter);
    expect(main.DEFAULT_WEBSOCKET_LIMITS).toBe(ws.DEFAULT_WEBSOCKET_LIMITS);
    // The old name of the options type is the same type.
    const options: main.WebSocketTransportOptions = { authenticate: async () => null, allowedOrigins: [] };
    const same: ws.WebSocketServerOptions = options;
    expect(same).toBe(options);
  });
});
