import type { IncomingMessage, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { NOT_FORWARDED_REQUEST_HEADERS } from '@threadline/contracts/core';

// A Fetch-API handler served from Node's `http` or Express (used for the AG-UI handler).

/**
 * Serves a Fetch-API handler (such as {@link createAgUiHandler}'s) from Node's `http` server or Express: the
 * request body streams in (a body an Express parser already read is used as is), the response streams out with
 * backpressure, and a client that goes away cancels the response body.
 * @example
 * app.post('/api/ag-ui', toNodeListener(createAgUiHandler(relay, { authenticate })));
 */
export function toNodeListener(
  handler: (request: Request) => Promise<Response>,
): (req: IncomingMessage & { body?: unknown; _body?: boolean }, res: ServerResponse) => void {
  return (req, res) => {
    void serveNode(handler, req, res);
  };
}

async function serveNode(
  handler: (request: Request) => Promise<Response>,
  req: IncomingMessage & { body?: unknown; _body?: boolean },
  res: ServerResponse,
): Promise<void> {
  const controller = new AbortController();
  res.on('close', () => controller.abort());
  const headers = new Headers();
  for (const [name, value] of Object.entries(req.headers)) {
    if (value === undefined || NOT_FORWARDED_REQUEST_HEADERS.has(name)) continue;
    for (const v of Array.isArray(value) ? value : [value]) headers.append(name, v);
  }
  const method = (req.method ?? 'GET').toUpperCase();
  let body: BodyInit | undefined;
  if (method !== 'GET' && method !== 'HEAD') {
    if (req._body === true) {
      // An Express body parser already read it.
      const parsed = req.body;
      body = Buffer.isBuffer(parsed)
        ? new Uint8Array(parsed)
        : typeof parsed === 'string'
          ? parsed
          : JSON.stringify(parsed ?? null);
    } else {
      body = Readable.toWeb(req) as ReadableStream<Uint8Array>;
      const declared = req.headers['content-length'];
      if (declared !== undefined) headers.set('content-length', declared);
    }
  }
  let response: Response;
  try {
    // The origin is fixed: the handler does not route, and the Host header is the client's to forge.
    response = await handler(
      new Request(`http://localhost${req.url ?? '/'}`, {
        method,
        headers,
        signal: controller.signal,
        ...(body !== undefined ? { body, duplex: 'half' } : {}),
      } as RequestInit),
    );
  } catch {
    if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
    res.end('internal error\n');
    return;
  }
  const out: Record<string, string> = {};
  response.headers.forEach((value, name) => (out[name] = value));
  res.writeHead(response.status, out);
  if (response.body === null) {
    res.end();
    return;
  }
  res.flushHeaders();
  const reader = response.body.getReader();
  const onClose = () => {
    reader.cancel().catch(() => {});
  };
  res.on('close', onClose);
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (!res.write(value)) {
        await new Promise<void>((resolve) => {
          const go = () => {
            res.off('drain', go);
            res.off('close', go);
            resolve();
          };
          res.on('drain', go);
          res.on('close', go);
        });
      }
      if (res.destroyed) break;
    }
    res.end();
  } catch {
    res.destroy();
  } finally {
    res.off('close', onClose);
  }
}
