import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { ClientMessageSchema, SequencedAgentEventSchema, parseWith } from '@threadline/contracts';
import type { ClientMessage, SequencedAgentEvent } from '@threadline/contracts';
import { WebSocketServer, type WebSocket } from 'ws';

type Distribute<T> = T extends unknown ? Omit<T, 'seq' | 'ts' | 'threadId'> : never;
/** An event without the fields the relay stamps. */
export type EventInput = Distribute<SequencedAgentEvent>;

/** The USER_MESSAGE that opens run `r<n>` of the test user `u-1` (message `u<n>`, client message `c<n>`). */
export function userSaid(n: number, text: string): EventInput {
  return {
    type: 'USER_MESSAGE',
    runId: `r${n}`,
    messageId: `u${n}`,
    clientMessageId: `c${n}`,
    userId: 'u-1',
    text,
  };
}

/** What the scripted server does with a connection's client messages. */
export interface Script {
  /** Runs on every `send`; default: nothing. */
  onSend?(server: ScriptedServer, msg: Extract<ClientMessage, { type: 'send' }>, ws: WebSocket): void;
  /** Runs on every `regenerate`; default: nothing. */
  onRegenerate?(
    server: ScriptedServer,
    msg: Extract<ClientMessage, { type: 'regenerate' }>,
    ws: WebSocket,
  ): void;
  /** Runs on every `cancel`; default: nothing. */
  onCancel?(server: ScriptedServer, msg: Extract<ClientMessage, { type: 'cancel' }>, ws: WebSocket): void;
  onApprove?(server: ScriptedServer, msg: Extract<ClientMessage, { type: 'approve' }>, ws: WebSocket): void;
  /** Runs on every `subscribe` before the replay; return false to skip the default replay. */
  onSubscribe?(
    server: ScriptedServer,
    msg: Extract<ClientMessage, { type: 'subscribe' }>,
    ws: WebSocket,
  ): boolean | void;
  /** Runs on every new socket; return false to ignore its messages. */
  onConnection?(server: ScriptedServer, ws: WebSocket): boolean | void;
}

/**
 * A small relay stand-in on 127.0.0.1 speaking the browser protocol over a real `ws` socket: it keeps one
 * thread's log, stamps seq, replays `seq > afterSeq` on subscribe, then fans out live events. Every client
 * message is checked against the contract schema, so the element is tested against the real wire shape.
 */
export class ScriptedServer {
  readonly log: SequencedAgentEvent[] = [];
  readonly received: ClientMessage[] = [];
  readonly invalid: string[] = [];
  connections = 0;
  /** Replay this many already-seen events again on resubscribe (a misbehaving server; the client must dedupe). */
  overlap = 0;
  private readonly subscribed = new Set<WebSocket>();
  private readonly waiters: Array<() => void> = [];

  private constructor(
    readonly wss: WebSocketServer,
    readonly threadId: string,
    public script: Script,
  ) {
    wss.on('connection', (ws) => {
      this.connections++;
      this.notify();
      ws.on('close', () => this.subscribed.delete(ws));
      if (this.script.onConnection?.(this, ws) === false) return;
      ws.on('message', (data) => this.onMessage(ws, String(data)));
    });
  }

  static async start(threadId: string, script: Script = {}): Promise<ScriptedServer> {
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    await once(wss, 'listening');
    return new ScriptedServer(wss, threadId, script);
  }

  get url(): string {
    return `ws://127.0.0.1:${(this.wss.address() as AddressInfo).port}`;
  }

  private onMessage(ws: WebSocket, text: string): void {
    let msg: ClientMessage;
    try {
      msg = parseWith(ClientMessageSchema, JSON.parse(text), 'client message');
    } catch {
      this.invalid.push(text);
      this.notify();
      return;
    }
    this.received.push(msg);
    this.notify();
    if (msg.type === 'subscribe') {
      if (this.script.onSubscribe?.(this, msg, ws) === false) return;
      const from = Math.max(0, msg.afterSeq - (msg.afterSeq > 0 ? this.overlap : 0));
      for (const e of this.log) if (e.seq > from) ws.send(JSON.stringify({ type: 'event', event: e }));
      this.subscribed.add(ws);
    } else if (msg.type === 'send') this.script.onSend?.(this, msg, ws);
    else if (msg.type === 'regenerate') this.script.onRegenerate?.(this, msg, ws);
    else if (msg.type === 'cancel') this.script.onCancel?.(this, msg, ws);
    else this.script.onApprove?.(this, msg, ws);
  }

  /** Stamps, validates, logs and fans out events to every subscribed socket. */
  append(...events: EventInput[]): SequencedAgentEvent[] {
    const out = events.map((e) => {
      const stamped = parseWith(
        SequencedAgentEventSchema,
        { ...e, threadId: this.threadId, ts: Date.now(), seq: this.log.length + 1 },
        'event',
      );
      this.log.push(stamped);
      return stamped;
    });
    for (const ws of this.subscribed)
      for (const e of out) ws.send(JSON.stringify({ type: 'event', event: e }));
    return out;
  }

  /** Sends a raw frame to every subscribed socket (for unknown event types and garbage). */
  broadcastRaw(frame: string): void {
    for (const ws of this.subscribed) ws.send(frame);
  }

  /** Kills every socket without a close handshake, as a crashed proxy would. */
  dropAll(): void {
    for (const ws of this.wss.clients) ws.terminate();
    this.subscribed.clear();
  }

  /** The text the log holds for one assistant message. */
  textOf(messageId: string): string {
    return this.log
      .filter((e) => e.type === 'TEXT_MESSAGE_CHUNK' && e.messageId === messageId)
      .map((e) => (e as Extract<SequencedAgentEvent, { type: 'TEXT_MESSAGE_CHUNK' }>).delta)
      .join('');
  }

  /** Resolves once `predicate` holds (checked after every connection and message). */
  async until(predicate: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
    if (predicate()) return;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), timeoutMs);
      const check = (): void => {
        if (predicate()) {
          clearTimeout(timer);
          resolve();
        } else this.waiters.push(check);
      };
      this.waiters.push(check);
    });
  }

  private notify(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  async close(): Promise<void> {
    for (const ws of this.wss.clients) ws.terminate();
    await new Promise<void>((resolve) => this.wss.close(() => resolve()));
  }
}
