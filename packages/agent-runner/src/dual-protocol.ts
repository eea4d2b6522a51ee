import type { Server as HttpServer } from 'node:http';
import {
  createServer as createHttp2Server,
  type Http2ServerRequest,
  type Http2ServerResponse,
  type ServerHttp2Session,
} from 'node:http2';
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import { Duplex } from 'node:stream';

// One port, two protocols: the agent service answers HTTP/1.1 and cleartext HTTP/2 (prior knowledge) on the same
// listener by looking at each connection's first bytes.

/** The client connection preface of HTTP/2 (RFC 9113 section 3.4). */
const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

/**
 * A socket whose first bytes were already read, replayed in front of the rest for node:http2. Unlike node:http,
 * an Http2Session reads a net.Socket's native handle directly and would miss bytes put back with `unshift`; given
 * a plain Duplex it reads through JavaScript instead. Reads follow the consumer's pace (the socket is paused
 * while this stream's buffer is full); writes go straight to the socket and complete while it accepts more.
 */
class ReplaySocket extends Duplex {
  constructor(
    private readonly socket: Socket,
    head: Buffer,
  ) {
    super({ allowHalfOpen: true });
    this.push(head);
    socket.on('data', (chunk: Buffer) => {
      if (!this.push(chunk)) socket.pause();
    });
    socket.on('end', () => this.push(null));
    socket.on('error', (error) => this.destroy(error));
    socket.on('close', () => this.destroy());
  }

  override _read(): void {
    this.socket.resume();
  }

  override _write(chunk: Buffer, encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.afterWrite(this.socket.write(chunk, encoding), callback);
  }

  override _writev(
    chunks: { chunk: Buffer; encoding: BufferEncoding }[],
    callback: (error?: Error | null) => void,
  ): void {
    this.socket.cork();
    let ok = true;
    for (const { chunk, encoding } of chunks) ok = this.socket.write(chunk, encoding);
    this.socket.uncork();
    this.afterWrite(ok, callback);
  }

  private afterWrite(ok: boolean, callback: (error?: Error | null) => void) {
    if (ok) callback();
    else this.socket.once('drain', () => callback());
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.socket.end();
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.socket.destroy();
    callback(error);
  }

  setNoDelay(noDelay?: boolean): this {
    this.socket.setNoDelay(noDelay);
    return this;
  }

  setKeepAlive(enable?: boolean, initialDelay?: number): this {
    this.socket.setKeepAlive(enable, initialDelay);
    return this;
  }

  setTimeout(ms: number, callback?: () => void): this {
    this.socket.setTimeout(ms, callback);
    return this;
  }

  get remoteAddress(): string | undefined {
    return this.socket.remoteAddress;
  }

  get remotePort(): number | undefined {
    return this.socket.remotePort;
  }

  get remoteFamily(): string | undefined {
    return this.socket.remoteFamily;
  }

  get localAddress(): string | undefined {
    return this.socket.localAddress;
  }

  get localPort(): number | undefined {
    return this.socket.localPort;
  }
}

/** A valid SETTINGS_MAX_CONCURRENT_STREAMS (an unsigned 32-bit integer) from any number. */
function streamLimit(n: number): number {
  return Number.isFinite(n) ? Math.min(0xffff_ffff, Math.max(1, Math.floor(n))) : 0xffff_ffff;
}

/**
 * One listener for HTTP/1.1 and h2c: each connection's first bytes are compared with the HTTP/2 preface, then the
 * connection is handed to the HTTP/1.1 or the HTTP/2 server, which both run the service's handler.
 */
export function speakBoth(
  h1Server: HttpServer,
  handler: (req: Http2ServerRequest, res: Http2ServerResponse) => void,
  options: {
    /** The service's run bound: streams per session are allowed above it so its own 429 can answer. */
    maxStreams: number;
    /** How long a connection may take to show which protocol it speaks. */
    sniffMs: number;
    logger: Pick<Console, 'error'>;
  },
): { listener: NetServer; closeIdle(): void; closeAll(): void } {
  const { maxStreams: maxRuns, sniffMs, logger } = options;
  // Room above the run bound so the service's own 429 too_many_runs (and DELETEs, health checks) answer
  // before nghttp2 refuses streams.
  const h2Server = createHttp2Server(
    { settings: { maxConcurrentStreams: streamLimit(maxRuns + Math.max(32, maxRuns)) } },
    handler,
  );
  const sockets = new Set<Socket>();
  const sessions = new Set<ServerHttp2Session>();
  h2Server.on('session', (session: ServerHttp2Session) => {
    sessions.add(session);
    session.once('close', () => sessions.delete(session));
  });
  // Session errors (a bad frame, a reset socket) end that session only; node:http2 already destroys it.
  h2Server.on('sessionError', () => {});
  h2Server.on('error', (error) => logger.error('[threadline-agent] HTTP/2 server error', error));
  // node:http arms its header/request timeout checks (and closeAllConnections) when it starts listening; it
  // never listens itself here, so start them as if it had.
  h1Server.emit('listening');

  const handOff = (socket: Socket, head: Buffer, isH2: boolean) => {
    if (isH2) {
      const replay = new ReplaySocket(socket, head);
      replay.on('error', () => {}); // the session gets the same error and ends itself
      socket.setNoDelay(true);
      h2Server.emit('connection', replay);
    } else {
      socket.unshift(head);
      h1Server.emit('connection', socket);
    }
    socket.resume();
  };

  const listener = createNetServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', () => {}); // a reset while sniffing just closes it; after hand-off the protocol handles it
    let head: Buffer = Buffer.alloc(0);
    const timer = setTimeout(() => socket.destroy(), sniffMs);
    const stop = () => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('close', stop);
    };
    const onData = (chunk: Buffer) => {
      head = head.length === 0 ? chunk : Buffer.concat([head, chunk]);
      const n = Math.min(head.length, H2_PREFACE.length);
      const preface = head.subarray(0, n).equals(H2_PREFACE.subarray(0, n));
      if (preface && n < H2_PREFACE.length) return; // still a prefix of the preface: wait for more
      socket.pause();
      stop();
      handOff(socket, head, preface);
    };
    // A client that ends before the protocol is known sent nothing to answer.
    const onEnd = () => {
      stop();
      socket.destroy();
    };
    socket.on('data', onData);
    socket.on('end', onEnd);
    socket.on('close', stop);
  });

  return {
    listener,
    /** At the start of shutdown: idle HTTP/1.1 connections close, HTTP/2 sessions get GOAWAY (no new streams). */
    closeIdle() {
      h1Server.closeIdleConnections();
      for (const session of sessions) session.close();
    },
    /** Once the runs are over: every connection and session ends. */
    closeAll() {
      for (const session of sessions) session.destroy();
      for (const socket of sockets) socket.destroy();
      h1Server.close(() => {}); // stops its timeout checks; it has no listening socket of its own
    },
  };
}
