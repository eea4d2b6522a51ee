import express from 'express';
import { z } from 'zod';
import { createTokenIssuer, createToolRouter, defineTool, MemoryToolStore } from '@threadline/tools-kit';
import { toolRouterMiddleware } from '@threadline/tools-kit/express';
const notes = new Map(); // threadId -> string[]; your database in real life
const addNote = defineTool({
  name: 'notes.add',
  description: 'Save a note in the current thread.',
  input: z.strictObject({ text: z.string().min(1).max(500) }),
  output: z.strictObject({ count: z.number() }),
  handler({ text }, ctx) {
    const list = notes.get(ctx.threadId) ?? notes.set(ctx.threadId, []).get(ctx.threadId);
    return { count: list.push(text) };
  },
});
export const tokens = createTokenIssuer({ secret: process.env.TOOLS_SECRET, issuer: 'my-api' });
export const router = createToolRouter({ tools: [addNote], tokens, store: new MemoryToolStore() });
const port = Number(process.env.PORT ?? 3000);
export const server = express().use('/api', toolRouterMiddleware(router)).listen(port, '127.0.0.1');
