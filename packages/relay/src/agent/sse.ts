import { AgentTransportError } from './agent-transport.js';

/**
 * A strict parser for the agent's `text/event-stream` body: `data:` lines (joined by newlines), comment lines
 * (`: ping` heartbeats), blank lines ending an event. `event:` may only say `message`; `id:` and `retry:` are
 * ignored; any other field, or a line longer than the bound, is an `agent_stream_invalid` failure.
 * @internal
 */
export class SseParser {
  #partial = '';
  /** The data of the event being read; null until its first `data:` line (most events have exactly one). */
  #data: string | null = null;
  #dataLength = 0;
  readonly #maxEventLength: number;

  constructor(maxEventLength: number) {
    this.#maxEventLength = maxEventLength;
  }

  /** Feeds decoded text; returns the data payloads of the events it completed. */
  push(text: string): string[] {
    const out: string[] = [];
    let start = 0;
    let buffer = text;
    if (this.#partial !== '') {
      buffer = this.#partial + text;
      this.#partial = '';
    }
    for (;;) {
      const nl = buffer.indexOf('\n', start);
      if (nl === -1) break;
      let end = nl;
      if (end > start && buffer.charCodeAt(end - 1) === 13) end--;
      if (end === start) {
        // A blank line ends the event.
        if (this.#data !== null) out.push(this.#data);
        this.#data = null;
        this.#dataLength = 0;
      } else if (isDataLine(buffer, start)) {
        // The hot path, one `data: <json>` line per event: one slice, no field parsing.
        this.#addData(buffer.slice(buffer.charCodeAt(start + 5) === 32 ? start + 6 : start + 5, end));
      } else this.#otherLine(buffer.slice(start, end));
      start = nl + 1;
    }
    const rest = start === 0 ? buffer : buffer.slice(start);
    if (rest.length + this.#dataLength > this.#maxEventLength) this.#tooLong();
    this.#partial = rest;
    return out;
  }

  #addData(value: string): void {
    this.#dataLength += value.length + 1;
    if (this.#dataLength > this.#maxEventLength) this.#tooLong();
    this.#data = this.#data === null ? value : `${this.#data}\n${value}`;
  }

  #otherLine(line: string): void {
    if (line.charCodeAt(0) === 58 /* ':' */) return; // comment / heartbeat
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.charCodeAt(0) === 32) value = value.slice(1);
    switch (field) {
      case 'data':
        return this.#addData(value); // `data` without a colon: an empty data line
      case 'event':
        if (value === 'message') return;
        throw new AgentTransportError(
          'agent_stream_invalid',
          `agent sent an SSE event of unknown type "${value.slice(0, 64)}"`,
        );
      case 'id':
      case 'retry':
        return;
      default:
        throw new AgentTransportError(
          'agent_stream_invalid',
          `agent sent a malformed SSE line (field "${field.slice(0, 64)}")`,
        );
    }
  }

  #tooLong(): never {
    throw new AgentTransportError(
      'agent_stream_invalid',
      `agent sent an SSE event longer than ${this.#maxEventLength} characters`,
    );
  }
}

/** Whether the line starting at `i` begins with `data:`. */
function isDataLine(s: string, i: number): boolean {
  return (
    s.charCodeAt(i) === 100 &&
    s.charCodeAt(i + 1) === 97 &&
    s.charCodeAt(i + 2) === 116 &&
    s.charCodeAt(i + 3) === 97 &&
    s.charCodeAt(i + 4) === 58
  );
}
