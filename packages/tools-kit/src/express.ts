/**
 * Express binding of the tool router: a few lines over the Fetch-API handler.
 * @packageDocumentation
 */
import type { IncomingMessage } from 'node:http';
import { NOT_FORWARDED_REQUEST_HEADERS } from '@threadline/contracts/core';
import type {
  NextFunction,
  Request as ExpressRequest,
  RequestHandler,
  Response as ExpressResponse,
} from 'express';
import { Reject, fail } from './responses.js';
import type { ToolRouter } from './router.js';
import { TOOL_ROUTES, matchToolRoute } from './routes.js';

/**
 * Serves a {@link ToolRouter} from Express: handles `/tools`, `/tools/:name`, `/state`, `/run-state` and
 * `/needs-approval/:name` (under the
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
    if (rest === null || matchToolRoute(rest) === null) {
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
  // The origin is fixed: the router routes on the path only, and the Host header is the client's to forge.
  let url: URL | null = null;
  try {
    url = new URL(`http://tools.local${req.url}`);
  } catch {
    // Leave url null: refused below like any other path this adapter will not route.
  }
  // Express matched the raw path; the URL parser resolves `..`, `%2e%2e` and `\`. If the two differ, the
  // router would serve a route other than the one every Express middleware in front of it saw (and checked).
  if (url === null || url.pathname !== req.url.split('?')[0]) {
    await send(res, fail(new Reject('not_found', 'no such route')));
    return;
  }
  const headers = new Headers();
  for (const [name, value] of Object.entries(req.headers)) {
    if (value === undefined || NOT_FORWARDED_REQUEST_HEADERS.has(name)) continue;
    for (const v of Array.isArray(value) ? value : [value]) headers.append(name, v);
  }
  const method = req.method.toUpperCase();
  let body: Buffer | undefined;
  if (method !== 'GET' && method !== 'HEAD') {
    // A paused run's saved state may be larger than a tool call's body: it has its own bound.
    const limit =
      url.pathname === `${router.basePath}${TOOL_ROUTES.runState}`
        ? router.maxRunStateBytes
        : router.maxBodyBytes;
    const read = await readBody(req, limit, router.bodyTimeoutMs ?? DEFAULT_BODY_TIMEOUT_MS);
    if (read instanceof Reject) {
      await send(res, fail(read));
      return;
    }
    body = read;
  }
  const request = new Request(url, {
    method,
    headers,
    signal: controller.signal,
    ...(body !== undefined ? { body: new Uint8Array(body) } : {}),
  });
  await send(res, await router(request));
}

async function send(res: ExpressResponse, response: Response): Promise<void> {
  res.status(response.status);
  response.headers.forEach((value, name) => res.setHeader(name, value));
  res.end(Buffer.from(await response.arrayBuffer()));
}

const DEFAULT_BODY_TIMEOUT_MS = 10_000;

/**
 * Reads at most `limit + 1` bytes (enough for the router to see the body is too large, never more) within
 * `timeoutMs`. A declared length over the limit is refused before reading anything, so a client that
 * announces a huge body and then stalls gets its 413 at once.
 */
function readBody(
  req: IncomingMessage & { body?: unknown; _body?: boolean },
  limit: number,
  timeoutMs: number,
): Promise<Buffer | Reject> {
  if (req._body === true || (req.readableEnded && req.body !== undefined)) {
    const parsed = req.body;
    if (Buffer.isBuffer(parsed)) return Promise.resolve(parsed);
    if (typeof parsed === 'string') return Promise.resolve(Buffer.from(parsed));
    try {
      return Promise.resolve(Buffer.from(JSON.stringify(parsed) ?? ''));
    } catch {
      // A body parser in front accepted nesting too deep to serialise again; the router would refuse it anyway.
      return Promise.resolve(new Reject('invalid_input', 'the body is nested too deeply'));
    }
  }
  const declared = req.headers['content-length'];
  if (declared !== undefined && /^\d+$/.test(declared) && Number(declared) > limit) {
    return Promise.resolve(new Reject('payload_too_large', `the body may be at most ${limit} bytes`));
  }
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const finish = (value: Buffer | Reject) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('close', onClose);
      if (!req.readableEnded) req.pause();
      resolve(value);
    };
    const onData = (chunk: Buffer | string) => {
      const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk);
      chunks.push(buf);
      size += buf.byteLength;
      if (size > limit) finish(Buffer.concat(chunks).subarray(0, limit + 1));
    };
    const onEnd = () => finish(Buffer.concat(chunks));
    const onError = () => finish(new Reject('aborted', 'the request body could not be read to the end'));
    const onClose = () => {
      if (!req.complete) onError();
    };
    const timer = setTimeout(
      () => finish(new Reject('request_timeout', `the body did not arrive within ${timeoutMs} ms`)),
      timeoutMs,
    );
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('close', onClose);
  });
}
