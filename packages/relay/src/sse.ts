import { AgentTransportError } from './agent-transport.js';

/**
 * A strict parser for the agent's `text/event-stream` body: `data:` lines (joined by newlines), comment lines
 * (`: ping` heartbeats), blank lines ending an event. `event:` may only say `message`; `id:` and `retry:` are
 * ignored; any other field, or a line longer than the bound, is an `agent_stream_invalid` failure.
 * @internal
 */
export class SseParser {
  #partial = '';
  #data: string[] = [];
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
      this.#line(buffer.slice(start, end), out);
      start = nl + 1;
    }
    const rest = buffer.slice(start);
    if (rest.length + this.#dataLength > this.#maxEventLength) {
      throw new AgentTransportError(
        'agent_stream_invalid',
        `agent sent an SSE event longer than ${this.#maxEventLength} characters`,
      );
    }
    this.#partial = rest;
    return out;
  }

  #line(line: string, out: string[]): void {
    if (line === '') {
      if (this.#data.length > 0) out.push(this.#data.join('\n'));
      this.#data = [];
      this.#dataLength = 0;
      return;
    }
    if (line.charCodeAt(0) === 58 /* ':' */) return; // comment / heartbeat
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.charCodeAt(0) === 32) value = value.slice(1);
    switch (field) {
      case 'data':
        this.#dataLength += value.length + 1;
        if (this.#dataLength > this.#maxEventLength) {
          throw new AgentTransportError(
            'agent_stream_invalid',
            `agent sent an SSE event longer than ${this.#maxEventLength} characters`,
          );
        }
        this.#data.push(value);
        return;
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
}
