/**
 * Express binding of the tool router: a few lines over the Fetch-API handler.
 * @packageDocumentation
 */
import type { IncomingMessage } from 'node:http';
import type {
  NextFunction,
  Request as ExpressRequest,
  RequestHandler,
  Response as ExpressResponse,
} from 'express';
import type { ToolRouter } from './router.js';

// Hop-by-hop and length headers describe the original connection, not the body we pass on.
const DROPPED_HEADERS = new Set([
  'host',
  'connection',
  'content-length',
  'transfer-encoding',
  'keep-alive',
  'upgrade',
  'expect',
]);

/**
 * Serves a {@link ToolRouter} from Express: handles `/tools`, `/tools/:name` and `/state` (under the
 * router's `basePath`, relative to where it is mounted) and calls `next()` for every other path. Mount it
 * before any body parser, or it reuses the parsed body (and the parser's limit then applies).
 * @example
 * const app = express();
 * app.use('/api', toolRouterMiddleware(router));
 */
export function toolRouterMiddleware(router: ToolRouter): RequestHandler {
  return (req: ExpressRequest, res: ExpressResponse, next: NextFunction) => {
    const path = req.path;
    const base = router.basePath;
    const rest =
      base === '' ? path : path === base || path.startsWith(`${base}/`) ? path.slice(base.length) : null;
    if (rest === null || !(rest === '/tools' || rest === '/state' || rest.startsWith('/tools/'))) {
      next();
      return;
    }
    serve(router, req, res).catch(next);
  };
}

async function serve(router: ToolRouter, req: ExpressRequest, res: ExpressResponse): Promise<void> {
  const controller = new AbortController();
  res.on('close', () => {
    if (!res.writableFinished) controller.abort();
  });
  const headers = new Headers();
  for (const [name, value] of Object.entries(req.headers)) {
    if (value === undefined || DROPPED_HEADERS.has(name)) continue;
    for (const v of Array.isArray(value) ? value : [value]) headers.append(name, v);
  }
  const method = req.method.toUpperCase();
  const body = method === 'GET' || method === 'HEAD' ? undefined : await readBody(req, router.maxBodyBytes);
  // The origin is fixed: the router routes on the path only, and the Host header is the client's to forge.
  const request = new Request(`http://tools.local${req.url}`, {
    method,
    headers,
    signal: controller.signal,
    ...(body !== undefined ? { body: new Uint8Array(body) } : {}),
  });
  const response = await router(request);
  res.status(response.status);
  response.headers.forEach((value, name) => res.setHeader(name, value));
  res.end(Buffer.from(await response.arrayBuffer()));
}

/** Reads at most `limit + 1` bytes: enough for the router to see the body is too large, never more. */
async function readBody(
  req: IncomingMessage & { body?: unknown; _body?: boolean },
  limit: number,
): Promise<Buffer> {
  if (req._body === true || (req.readableEnded && req.body !== undefined)) {
    const parsed = req.body;
    if (Buffer.isBuffer(parsed)) return parsed;
    if (typeof parsed === 'string') return Buffer.from(parsed);
    return Buffer.from(JSON.stringify(parsed) ?? '');
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as string);
    chunks.push(buf);
    size += buf.byteLength;
    if (size > limit) break;
  }
  return Buffer.concat(chunks).subarray(0, limit + 1);
}
