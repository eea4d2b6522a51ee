import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import type { AgentEvent } from '@threadline/contracts';
import express from 'express';
import { createTokenIssuer, createToolRouter, MemoryToolStore } from '../src/index.js';
import type { EventSink, ToolDefinition, ToolRouterOptions } from '../src/index.js';
import { toolRouterMiddleware } from '../src/express.js';

export const SECRET = 'test-secret-that-is-at-least-32-bytes-long!!';
export const ISSUER = 'threadline-test';

/** Records every event the router publishes. */
export class RecordingSink implements EventSink {
  readonly events: AgentEvent[] = [];
  async emit(event: AgentEvent): Promise<void> {
    this.events.push(event);
  }
}

/** Collects log lines instead of printing them, so tests can assert what reached the log. */
export function captureLogger() {
  const errors: unknown[][] = [];
  const warns: unknown[][] = [];
  return {
    errors,
    warns,
    logger: {
      error: (...a: unknown[]) => void errors.push(a),
      warn: (...a: unknown[]) => void warns.push(a),
    },
  };
}

export function makeSetup(extra: Partial<ToolRouterOptions> & { tools?: ToolDefinition[] } = {}) {
  const tokens = createTokenIssuer({ secret: SECRET, issuer: ISSUER });
  const store = new MemoryToolStore();
  const sink = new RecordingSink();
  const log = captureLogger();
  const router = createToolRouter({ tokens, store, events: sink, logger: log.logger, ...extra });
  const mint = (over: Partial<{ userId: string; threadId: string; runId: string; tools: string[] }> = {}) =>
    tokens.issue({ userId: 'u1', threadId: 't1', runId: 'r1', tools: router.toolNames, ...over });
  return { tokens, store, sink, log, router, mint };
}

/** Serves a router through the Express adapter on 127.0.0.1 (port 0). */
export async function serveExpress(
  router: Parameters<typeof toolRouterMiddleware>[0],
  mount = '/',
): Promise<{ url: string; close(): Promise<void> }> {
  const app = express();
  app.use(mount, toolRouterMiddleware(router));
  app.use((_req, res) => {
    res.status(404).json({ fallthrough: true });
  });
  const server: Server = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}${mount === '/' ? '' : mount}`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((err) => (err ? reject(err) : resolve()));
      }),
  };
}

export function post(url: string, token: string | null, body: unknown, headers: Record<string, string> = {}) {
  return fetch(url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      ...(token !== null ? { authorization: `Bearer ${token}` } : {}),
      ...headers,
    },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}
