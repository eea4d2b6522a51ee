import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { AgentEvent } from '@threadline/contracts';
import {
  MemoryToolStore,
  createTokenIssuer,
  createToolRouter,
  type ToolDefinition,
} from '@threadline/tools-kit';

/** A real tools-kit router with a MemoryToolStore, served over real HTTP on 127.0.0.1. */
export async function startToolsServer(options: { tools?: ToolDefinition[]; store?: MemoryToolStore } = {}) {
  const store = options.store ?? new MemoryToolStore();
  const emitted: AgentEvent[] = [];
  /** Decisions as the relay would store them (TOOL_APPROVAL_RESOLVED), keyed `thread/run/toolCallId`. */
  const decisions = new Map<string, boolean>();
  const tokens = createTokenIssuer({
    secret: 'tools-secret-that-is-long-enough-0123456789',
    issuer: 'test-api',
  });
  const makeRouter = (tools: ToolDefinition[]) =>
    createToolRouter({
      tools,
      tokens,
      store,
      events: { emit: async (e) => void emitted.push(e) },
      approvals: {
        isApproved: ({ threadId, runId, toolCallId }) =>
          decisions.get(`${threadId}/${runId}/${toolCallId}`) === true,
      },
      logger: { error() {}, warn() {} },
    });
  let router = makeRouter(options.tools ?? []);
  const calls: string[] = [];
  /** Response body bytes per request line, in order. */
  const sent: { call: string; bytes: number }[] = [];
  const server: Server = createServer((req, res) => {
    void (async () => {
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      calls.push(`${req.method} ${req.url}`);
      const controller = new AbortController();
      res.on('close', () => controller.abort());
      const request = new Request(`http://127.0.0.1${req.url}`, {
        method: req.method!,
        headers: req.headers as Record<string, string>,
        ...(req.method === 'GET' || req.method === 'HEAD' ? {} : { body: Buffer.concat(chunks) }),
        signal: controller.signal,
      });
      const response = await router(request);
      res.writeHead(response.status, Object.fromEntries(response.headers));
      const body = Buffer.from(await response.arrayBuffer());
      sent.push({ call: `${req.method} ${req.url}`, bytes: body.length });
      res.end(body);
    })().catch(() => res.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    baseUrl,
    store,
    emitted,
    calls,
    sent,
    get router() {
      return router;
    },
    /** Records a person's decision on a tool call, as the relay does before it resumes the run. */
    decide(input: { threadId: string; runId: string; toolCallId: string; approved: boolean }) {
      decisions.set(`${input.threadId}/${input.runId}/${input.toolCallId}`, input.approved);
    },
    /** Serves another set of tools from now on, at the same URL with the same token secret (a redeploy). */
    replaceTools(tools: ToolDefinition[]) {
      router = makeRouter(tools);
    },
    /** A tools reference for a run; `tools` narrows the token's tool list (default: every tool). */
    async toolsRef(input: { userId: string; threadId: string; runId: string }, tools?: string[]) {
      return { baseUrl, token: await tokens.issue({ ...input, tools: tools ?? router.toolNames }) };
    },
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}
export type ToolsServer = Awaited<ReturnType<typeof startToolsServer>>;
