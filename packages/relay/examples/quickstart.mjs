// server.mjs — TOOLS_SECRET=<32+ bytes> node server.mjs
import express from 'express';
import { createRunner } from '@threadline/agent-runner';
import { createRelay, inProcessAgentTransport } from '@threadline/relay';
import { openSqliteStore } from '@threadline/relay/sqlite';
import { attachWebSocketServer } from '@threadline/relay/ws';
import { createTokenIssuer, createToolRouter } from '@threadline/tools-kit';
import { toolRouterMiddleware } from '@threadline/tools-kit/express';

const store = openSqliteStore({ path: process.env.DB ?? './threadline.db' });
// The agent keeps its memory behind your API: the tool router serves it, with the run's act-as token.
const tokens = createTokenIssuer({ secret: process.env.TOOLS_SECRET, issuer: 'my-api' });
const router = createToolRouter({ tokens, store });
const server = express()
  .use('/api', toolRouterMiddleware(router))
  .listen(Number(process.env.PORT ?? 3000), '127.0.0.1');
await new Promise((resolve) => server.once('listening', resolve));
const { port } = server.address();

const relay = createRelay({
  store,
  agent: inProcessAgentTransport(createRunner()), // offline demo model without OPENAI_API_KEY
  tokens,
  toolsBaseUrl: `http://127.0.0.1:${port}/api`,
  tools: router.toolNames,
});
await relay.recover(); // ends runs a previous process left running

const user = { id: 'ada' }; // in your app: whoever the session cookie says
const thread = await relay.createThread({ user, title: 'First thread' });
attachWebSocketServer(server, relay, {
  authenticate: async () => user, // (req) => your session check; null answers 401
  allowedOrigins: ['http://localhost:3000'], // anything else gets 403
  path: '/ws',
});
console.log(`thread ${thread.threadId}: ws://127.0.0.1:${port}/ws`);
