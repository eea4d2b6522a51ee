import type { IncomingHttpHeaders } from 'node:http';

// The parts of a request and a response the service uses, the same on HTTP/1 and HTTP/2, and reading a bounded
// request body.

/** What the handler uses of a request, the same on HTTP/1 (`IncomingMessage`) and HTTP/2 (`Http2ServerRequest`). */
export interface Req {
  readonly headers: IncomingHttpHeaders;
  readonly url?: string | undefined;
  readonly method?: string | undefined;
  readonly httpVersionMajor: number;
  readonly socket: unknown;
  on(event: 'data', listener: (chunk: Buffer) => void): unknown;
  on(event: 'end' | 'error' | 'close', listener: () => void): unknown;
  resume(): unknown;
}

/** What the handler uses of a response, the same on HTTP/1 (`ServerResponse`) and HTTP/2 (`Http2ServerResponse`). */
export interface Res {
  readonly req: { readonly httpVersionMajor: number };
  readonly headersSent: boolean;
  readonly writableEnded: boolean;
  /** Absent on `Http2ServerResponse`: track 'close' as well. */
  readonly destroyed?: boolean;
  writeHead(status: number, headers: Record<string, string>): unknown;
  /** Not in @types/node's Http2ServerResponse; there writeHead sends the headers at once anyway. */
  flushHeaders?(): void;
  write(chunk: string): boolean;
  end(): unknown;
  end(chunk: string): unknown;
  destroy(): unknown;
  on(event: 'close' | 'drain', listener: () => void): unknown;
  off(event: 'close' | 'drain', listener: () => void): unknown;
}

/** A request body as text, or why it was not read: over `maxBytes`, slower than `timeoutMs`, or aborted. */
export type BodyResult = { text: string } | { error: 'too_large' | 'timeout' | 'aborted' };

/** Reads a request body of at most `maxBytes` within `timeoutMs`. */
export function readBody(req: Req, limits: { maxBytes: number; timeoutMs: number }): Promise<BodyResult> {
  return new Promise((resolve) => {
    const parts: Buffer[] = [];
    let size = 0;
    let settled = false;
    const finish = (v: BodyResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(v);
    };
    const timer = setTimeout(() => finish({ error: 'timeout' }), limits.timeoutMs);
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > limits.maxBytes) return finish({ error: 'too_large' });
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limits.maxBytes) return finish({ error: 'too_large' });
      parts.push(c);
    });
    req.on('end', () => finish({ text: Buffer.concat(parts).toString('utf8') }));
    req.on('error', () => finish({ error: 'aborted' }));
    req.on('close', () => finish({ error: 'aborted' }));
  });
}
