import { request as httpRequest } from 'node:http';

/** A response read whole: status, headers, text and parsed JSON (when it is JSON). */
export interface Reply {
  status: number;
  headers: Headers;
  text: string;
  json: any; // eslint-disable-line @typescript-eslint/no-explicit-any
}

/** A tiny cookie-keeping HTTP client, like one browser profile. Origin is sent as a browser page would. */
export class Client {
  cookie: string | undefined;
  constructor(
    readonly base: string,
    /** null: send no Origin header (like curl). */
    readonly origin: string | null = base,
  ) {}

  async req(
    method: string,
    path: string,
    options: { json?: unknown; body?: string; headers?: Record<string, string> } = {},
  ): Promise<Reply> {
    const headers: Record<string, string> = { ...options.headers };
    if (this.origin !== null && method !== 'GET' && !('origin' in headers)) headers.origin = this.origin;
    if (this.cookie) headers.cookie = this.cookie;
    let body = options.body;
    if (options.json !== undefined) {
      body = JSON.stringify(options.json);
      headers['content-type'] ??= 'application/json';
    }
    const res = await fetch(this.base + path, { method, headers, body: body ?? null, redirect: 'manual' });
    const set = res.headers.getSetCookie();
    for (const c of set) {
      const [pair] = c.split(';');
      if (!pair) continue;
      const value = pair.slice(pair.indexOf('=') + 1);
      this.cookie = value === '' || /max-age=0|expires=thu, 01 jan 1970/i.test(c) ? undefined : pair;
    }
    const text = await res.text();
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: res.status, headers: res.headers, text, json };
  }

  signup(username: string, password = 'correct horse battery') {
    return this.req('POST', '/api/auth/signup', { json: { username, password } });
  }
}

/**
 * Sends a raw request with an exact Content-Length and body, bypassing fetch's own checks (for size limits and
 * malformed bodies).
 */
export function rawRequest(
  url: string,
  options: { method: string; headers: Record<string, string>; body?: string | Buffer },
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: options.method, headers: options.headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }),
      );
    });
    req.on('error', reject);
    req.end(options.body);
  });
}
