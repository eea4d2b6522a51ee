import type { ClientMessage } from '@threadline/contracts';
import { AgentChatError } from './errors.js';

/** Why a connection ended, as far as the transport knows. */
export interface TransportCloseInfo {
  /** WebSocket close code, or a transport's own equivalent. 4401/4403 mean "unauthorized"/"forbidden". */
  code?: number;
  reason?: string;
}

/**
 * What a transport reports back. Call these asynchronously (never from inside `connect`), at most one
 * `close`, and nothing after it.
 */
export interface TransportListener {
  /** The connection is ready for `send`. */
  open(): void;
  /** One server message as JSON text (`{type: "event" | "ack" | "error", ...}` of the browser protocol). */
  message(text: string): void;
  /** The connection ended (or never opened). The element decides whether and when to reconnect. */
  close(info: TransportCloseInfo): void;
}

/** One live connection made by a {@link ChatTransport}. */
export interface TransportConnection {
  /** Sends one client message. Throws when the connection is not open. */
  send(message: ClientMessage): void;
  /** Closes the connection. The listener hears nothing more after this. */
  close(): void;
}

/**
 * The element's port to the server: makes one connection at a time. Reconnecting, resuming from the last
 * seq and deduplicating are the element's job, so a transport stays a thin adapter (WebSocket by default;
 * SSE + POST, or a scripted fake in tests, work the same way).
 *
 * @example
 * chat.transport = { connect(listener) { const c = mySocket(listener); return { send: (m) => c.write(m), close: () => c.end() }; } };
 */
export interface ChatTransport {
  connect(listener: TransportListener): TransportConnection;
}

/**
 * The default transport: a browser WebSocket to `url` speaking the browser protocol as JSON text frames.
 *
 * @example
 * chat.transport = new WebSocketTransport('wss://api.example.com/ws');
 */
export class WebSocketTransport implements ChatTransport {
  constructor(
    readonly url: string,
    readonly protocols?: string | string[],
  ) {}

  connect(listener: TransportListener): TransportConnection {
    let ws: WebSocket;
    try {
      ws = new WebSocket(this.url, this.protocols);
    } catch (cause) {
      throw new AgentChatError(
        'transport_error',
        `cannot open a WebSocket to ${this.url}: check the endpoint`,
        { cause },
      );
    }
    let done = false;
    ws.onopen = () => {
      if (!done) listener.open();
    };
    ws.onmessage = (e: MessageEvent) => {
      if (!done) listener.message(typeof e.data === 'string' ? e.data : '');
    };
    ws.onclose = (e: CloseEvent) => {
      if (done) return;
      done = true;
      listener.close({ code: e.code, reason: e.reason });
    };
    return {
      send(message) {
        if (done || ws.readyState !== WebSocket.OPEN) {
          throw new AgentChatError('not_connected', 'the connection is not open; wait for it to reconnect');
        }
        ws.send(JSON.stringify(message));
      },
      close() {
        done = true;
        ws.close(1000);
      },
    };
  }
}
