import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import type { IncomingMessage, OutgoingHttpHeaders } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { JSON_MEDIA_TYPE, SSE_MEDIA_TYPE } from '@threadline/contracts';

// The HTTP clients of the agent transport: one shape (an opener that POSTs a run or DELETEs it and resolves at
// the response headers), made over fetch or over node:http(s) with a keep-alive pool. HTTP/2 is in http2-client.ts.

/** A response as the transport needs it, whichever HTTP client produced it. */
export interface OpenedResponse {
  status: number;
  contentType: string;
  /** The Retry-After header, if any. */
  retryAfter?: string | undefined;
  body: AsyncIterable<Uint8Array>;
  /** Throws if the body, whose iterator is done, was cut off rather than ended (for clients that do not say). */
  checkEnd?(): void;
  /** The start of the body, for an error message: the first chunk (and at most 4 KiB of it), never the whole body. */
  readSome(): Promise<string>;
  /**
   * Releases the response (idempotent): `drain` after the terminal event reads the rest of the body (briefly)
   * so the connection can be reused; otherwise an unfinished response is cut off.
   */
  close(drain?: boolean): void;
}

/** POSTs `body` as JSON (or DELETEs when it is null) with the credential; resolves at the response headers. */
export type Opener = (
  url: string,
  credential: string,
  body: string | null,
  signal: AbortSignal,
) => Promise<OpenedResponse>;

/** An opener and how to release the connections it keeps. */
export interface Client {
  open: Opener;
  close(): void;
}

/** An opener over an injected fetch (which picks its own protocol and connection reuse). */
export function fetchOpener(fetchImpl: typeof fetch): Opener {
  return async (url, credential, body, signal) => {
    const response = await fetchImpl(url, {
      method: body === null ? 'DELETE' : 'POST',
      headers: {
        authorization: `Bearer ${credential}`,
        ...(body === null ? {} : { 'content-type': JSON_MEDIA_TYPE, accept: SSE_MEDIA_TYPE }),
      },
      ...(body === null ? {} : { body }),
      signal,
    });
    const reader = response.body?.getReader();
    let closed = false;
    const close = () => {
      if (closed) return;
      closed = true;
      reader?.cancel().catch(() => {});
    };
    const read = async (): Promise<IteratorResult<Uint8Array>> =>
      reader ? ((await reader.read()) as IteratorResult<Uint8Array>) : { done: true, value: undefined };
    return {
      status: response.status,
      contentType: response.headers.get('content-type') ?? '',
      retryAfter: response.headers.get('retry-after') ?? undefined,
      body: { [Symbol.asyncIterator]: () => ({ next: read }) },
      async readSome() {
        try {
          const first = await read();
          return first.done ? '' : bodyStart(first.value);
        } catch {
          return '';
        } finally {
          close();
        }
      },
      close,
    };
  };
}

/** A client over node:http(s) with a keep-alive pool for `base`; `close()` destroys the pool and its sockets. */
export function nodeHttpClient(base: string): Client {
  const secure = new URL(base).protocol === 'https:';
  const agent = secure ? new HttpsAgent({ keepAlive: true }) : new HttpAgent({ keepAlive: true });
  const send = secure ? httpsRequest : httpRequest;
  const open: Opener = (url, credential, body, signal) =>
    new Promise<OpenedResponse>((resolve, reject) => {
      const headers: OutgoingHttpHeaders = { authorization: `Bearer ${credential}` };
      if (body !== null) {
        headers['content-type'] = JSON_MEDIA_TYPE;
        headers.accept = SSE_MEDIA_TYPE;
        headers['content-length'] = Buffer.byteLength(body);
      }
      const req = send(url, { method: body === null ? 'DELETE' : 'POST', headers, agent });
      // Aborting destroys the request and its response; a response iterator then throws.
      let response: IncomingMessage | undefined;
      const onAbort = () => {
        // A response received in full has nothing left to abort (destroying its request then throws).
        if (!response) req.destroy(toError(signal.reason));
        else if (!response.complete) response.destroy(toError(signal.reason));
      };
      if (signal.aborted) onAbort();
      else signal.addEventListener('abort', onAbort, { once: true });
      req.on('error', (error) => {
        signal.removeEventListener('abort', onAbort);
        reject(error); // no-op once the response arrived: its reader sees the error
      });
      req.once('response', (res: IncomingMessage) => {
        response = res;
        res.on('error', () => {}); // surfaced by the body iterator while it reads; ignored after close
        let closed = false;
        const close = (drain?: boolean) => {
          if (closed) return;
          closed = true;
          signal.removeEventListener('abort', onAbort);
          if (res.complete) return void res.resume(); // drained, the socket goes back to the pool
          if (!drain) return void res.destroy();
          // After the terminal event only the end of the body is left: read it, so the connection is kept,
          // but never wait for it long.
          const cut = setTimeout(() => res.destroy(), 1_000);
          cut.unref();
          res.once('close', () => clearTimeout(cut)).resume();
        };
        resolve({
          status: res.statusCode ?? 0,
          contentType: String(res.headers['content-type'] ?? ''),
          retryAfter: res.headers['retry-after'],
          body: res,
          readSome: () =>
            new Promise<string>((done) => {
              res.once('data', (first: Buffer) => {
                done(bodyStart(first));
                res.destroy();
              });
              res.once('end', () => done(''));
              res.once('close', () => done(''));
            }).finally(() => close()),
          close,
        });
      });
      req.end(body ?? undefined);
    });
  return { open, close: () => agent.destroy() };
}

/** An abort reason as an Error (a reason that is not one becomes its message). */
export function toError(reason: unknown): Error {
  return reason instanceof Error ? reason : new Error(String(reason ?? 'aborted'));
}

/** The first 4 KiB of a body chunk as text: enough for an agent service's error body. */
export function bodyStart(bytes: Uint8Array): string {
  return new TextDecoder().decode(bytes.subarray(0, 4096));
}

/** Text for an error message: whitespace collapsed, at most 200 characters. */
export function summarize(text: string): string {
  return text.slice(0, 400).replace(/\s+/g, ' ').trim().slice(0, 200);
}
