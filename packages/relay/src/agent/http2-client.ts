import { connect as http2Connect, constants as h2 } from 'node:http2';
import type { ClientHttp2Session, ClientHttp2Stream, OutgoingHttpHeaders as Http2Headers } from 'node:http2';
import { JSON_MEDIA_TYPE, SSE_MEDIA_TYPE } from '@threadline/contracts';
import { bodyStart, toError } from './http-client.js';
import type { Client, OpenedResponse, Opener } from './http-client.js';

// The agent transport's HTTP/2 client: every run is a stream of one shared session (see nodeHttp2Client).

/**
 * HTTP/2 receive window of one run's stream (256 KiB): the most bytes the agent can send on a run ahead of the
 * relay reading them, so the bound on what one run buffers here. Across runs the bound is runs × this window.
 */
const HTTP2_STREAM_WINDOW = 256 << 10;
/**
 * HTTP/2 receive window of the session (16 MiB): the most bytes in flight on the connection at once. Node hands
 * data to each stream's buffer as it arrives and gives the session window back then, so this is a throughput
 * ceiling (the 64 KiB default would throttle a burst), not a second bound on unread bytes.
 */
const HTTP2_SESSION_WINDOW = 16 << 20;

/** One HTTP/2 session and the number of streams open on it. */
interface Http2Slot {
  session: ClientHttp2Session;
  streams: number;
  pinging: boolean;
}

/**
 * Requests over one HTTP/2 session, created on first use and shared by every request: a new one replaces it
 * once it errs, closes or receives GOAWAY (streams in flight on the old one finish or fail on their own). The
 * session is unref'd while no stream is open, so an idle transport never keeps the process alive. A request
 * aborted before it ended (the connect timeout, an idle run) pings the session: one that does not answer
 * within `pingTimeoutMs` is destroyed, so a dead connection cannot swallow every later run.
 */
export function nodeHttp2Client(base: string, pingTimeoutMs: number): Client {
  let current: Http2Slot | undefined;

  function slot(): Http2Slot {
    if (current && !current.session.closed && !current.session.destroyed) return current;
    const session = http2Connect(base, {
      settings: { enablePush: false, initialWindowSize: HTTP2_STREAM_WINDOW },
    });
    const made: Http2Slot = { session, streams: 0, pinging: false };
    current = made;
    const retire = () => {
      if (current === made) current = undefined;
    };
    // A session's failure reaches every request through its own stream; here it only retires the session.
    session.on('error', retire);
    session.once('goaway', retire);
    session.once('close', retire);
    session.once('connect', () => {
      try {
        session.setLocalWindowSize(HTTP2_SESSION_WINDOW);
      } catch {
        // Closed in the meantime: the next request makes a new session.
      }
    });
    session.unref();
    return made;
  }

  function healthCheck(s: Http2Slot): void {
    if (s.pinging || s.session.closed || s.session.destroyed) return;
    s.pinging = true;
    const done = () => {
      s.pinging = false;
      clearTimeout(timer);
    };
    const timer = setTimeout(() => {
      s.pinging = false;
      s.session.destroy(new Error(`the agent did not answer an HTTP/2 ping within ${pingTimeoutMs} ms`));
    }, pingTimeoutMs);
    timer.unref();
    try {
      if (!s.session.ping(done)) done();
    } catch {
      done();
    }
  }

  function request(headers: Http2Headers, endStream: boolean): { s: Http2Slot; stream: ClientHttp2Stream } {
    try {
      const s = slot();
      return { s, stream: s.session.request(headers, { endStream }) };
    } catch {
      // The session cannot take another stream (closing, out of stream ids): retire it, try a fresh one once.
      current?.session.close();
      current = undefined;
      const s = slot();
      return { s, stream: s.session.request(headers, { endStream }) };
    }
  }

  const open: Opener = (url, credential, body, signal) =>
    new Promise<OpenedResponse>((resolve, reject) => {
      if (signal.aborted) return reject(toError(signal.reason));
      const target = new URL(url);
      const headers: Http2Headers = {
        ':method': body === null ? 'DELETE' : 'POST',
        ':path': `${target.pathname}${target.search}`,
        authorization: `Bearer ${credential}`,
      };
      if (body !== null) {
        headers['content-type'] = JSON_MEDIA_TYPE;
        headers.accept = SSE_MEDIA_TYPE;
      }
      // A refused stream was never processed by the agent (a GOAWAY crossed it, or the agent was at its stream
      // limit): it is sent again once, on whatever session is current by then.
      const attempt = (mayRetry: boolean) => {
        let s: Http2Slot;
        let stream: ClientHttp2Stream;
        try {
          ({ s, stream } = request(headers, body === null));
        } catch (error) {
          return reject(error);
        }
        if (s.streams++ === 0) s.session.ref();
        let responded = false;
        let failed = false;
        let ended = false;
        let closed = false;
        const cancel = () => {
          if (!stream.closed && !stream.destroyed) stream.close(h2.NGHTTP2_CANCEL);
        };
        const onAbort = () => {
          if (ended) return; // received in full: nothing left to abort
          healthCheck(s);
          cancel();
          if (!responded) reject(toError(signal.reason));
        };
        const fail = (error: Error) => {
          // After the response the body iterator reports errors; after close they are moot.
          if (responded || failed) return;
          failed = true;
          signal.removeEventListener('abort', onAbort);
          if (mayRetry && !signal.aborted && stream.rstCode === h2.NGHTTP2_REFUSED_STREAM) attempt(false);
          else reject(error);
        };
        signal.addEventListener('abort', onAbort, { once: true });
        stream.on('error', fail);
        stream.once('end', () => (ended = true));
        stream.once('close', () => {
          signal.removeEventListener('abort', onAbort);
          if (--s.streams === 0 && !s.session.destroyed) s.session.unref();
          if (!responded) fail(streamCutOff(stream));
        });
        stream.once('response', (responseHeaders) => {
          responded = true;
          const close = () => {
            if (closed) return;
            closed = true;
            signal.removeEventListener('abort', onAbort);
            // With HTTP/2 there is no connection to keep for the next request: an unfinished stream is cancelled.
            if (!ended) cancel();
          };
          resolve({
            status: Number(responseHeaders[':status'] ?? 0),
            contentType: String(responseHeaders['content-type'] ?? ''),
            retryAfter: responseHeaders['retry-after']?.toString(),
            body: stream,
            // A stream reset or cut off with its session ends its iterator quietly, as if the agent had ended it.
            checkEnd() {
              if (!stream.readableEnded) throw signal.aborted ? toError(signal.reason) : streamCutOff(stream);
            },
            readSome: () =>
              new Promise<string>((done) => {
                stream.once('data', (first: Buffer) => done(bodyStart(first)));
                stream.once('end', () => done(''));
                stream.once('close', () => done(''));
              }).finally(close),
            close,
          });
        });
        if (body !== null) stream.end(body);
      };
      attempt(true);
    });

  return {
    open,
    close() {
      current?.session.close();
      current = undefined;
    },
  };
}
/** HTTP/2 error codes (RFC 9113 section 7) by value, for messages. */
const HTTP2_ERROR_NAMES = [
  'NO_ERROR',
  'PROTOCOL_ERROR',
  'INTERNAL_ERROR',
  'FLOW_CONTROL_ERROR',
  'SETTINGS_TIMEOUT',
  'STREAM_CLOSED',
  'FRAME_SIZE_ERROR',
  'REFUSED_STREAM',
  'CANCEL',
  'COMPRESSION_ERROR',
  'CONNECT_ERROR',
  'ENHANCE_YOUR_CALM',
  'INADEQUATE_SECURITY',
  'HTTP_1_1_REQUIRED',
];

function streamCutOff(stream: ClientHttp2Stream): Error {
  const code = stream.rstCode;
  const name = HTTP2_ERROR_NAMES[code] ?? `code ${code}`;
  return new Error(`the HTTP/2 stream was closed before it ended (${name})`);
}
