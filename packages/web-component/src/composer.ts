import { html, nothing, type TemplateResult } from 'lit';
import { LIMITS } from '@threadline/contracts/core';
import type { AgentChat } from './agent-chat-element.js';

/** The composer shows its character counter from this share of the message limit on. */
const COUNTER_FROM = 0.9;
const fmt = (n: number): string => n.toLocaleString();

/** The send box: the growing textarea, Send, Stop while `running`, and the counter near the length limit. */
export function composer(chat: AgentChat, running: boolean): TemplateResult {
  const over = chat.__draftLength > LIMITS.maxMessageLength;
  return html`<form part="composer" class="composer" @submit=${onSubmit}>
    <textarea
      part="input"
      rows="1"
      aria-label="Message"
      aria-describedby="counter"
      aria-invalid=${over ? 'true' : 'false'}
      placeholder="Write a message…"
      @keydown=${onKeydown}
      @input=${onInput}
    ></textarea>
    <button
      part="send-button"
      type="submit"
      aria-label="Send message"
      ?disabled=${!chat.__canSend() || !chat.__hasDraft || over}
    >
      Send
    </button>
    ${
      running
        ? html`<button
            part="stop-button"
            type="button"
            class="secondary"
            aria-label="Stop the response"
            @click=${stop}
          >
            Stop
          </button>`
        : nothing
    }
    ${
      chat.__draftLength >= LIMITS.maxMessageLength * COUNTER_FROM
        ? html`<div class="composer-foot">
            <span part="composer-note" class="note"
              >${over ? `${chat.__refused ? 'Not sent. ' : ''}${tooLong(chat.__draftLength)}` : ''}</span
            >
            <span part="counter" id="counter" class="counter" ?data-over=${over}
              >${fmt(chat.__draftLength)} / ${fmt(LIMITS.maxMessageLength)}</span
            >
          </div>`
        : nothing
    }
  </form>`;
}

function tooLong(length: number): string {
  return `Too long by ${fmt(length - LIMITS.maxMessageLength)} characters. Shorten it to send.`;
}

// Listeners below are plain functions: lit calls a template's listeners with `this` set to the element.

function onInput(this: AgentChat, e: Event): void {
  const input = e.currentTarget as HTMLTextAreaElement;
  // Grow with the text; CSS max-height bounds it, then it scrolls.
  input.style.height = 'auto';
  input.style.height = `${input.scrollHeight + input.offsetHeight - input.clientHeight}px`;
  const has = input.value.trim() !== '';
  const length = input.value.length;
  const max = LIMITS.maxMessageLength;
  if (length > max && this.__draftLength <= max) this.__announce(tooLong(length));
  if (has !== this.__hasDraft || length !== this.__draftLength) {
    if (length <= max) this.__refused = false;
    this.__hasDraft = has;
    this.__draftLength = length;
    this.requestUpdate();
  }
}

function onKeydown(this: AgentChat, e: KeyboardEvent): void {
  if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    submit(this);
  }
}

function onSubmit(this: AgentChat, e: Event): void {
  e.preventDefault();
  submit(this);
}

function submit(chat: AgentChat): void {
  const input = chat.renderRoot.querySelector('textarea');
  if (!input || !input.value.trim()) return;
  if (input.value.length > LIMITS.maxMessageLength) {
    // Never cut the text: refuse, say why, keep the draft.
    chat.__refused = true;
    chat.__announce(tooLong(input.value.length));
    chat.requestUpdate();
    return;
  }
  if (!chat.__canSend()) return;
  chat.__attempt(() => {
    chat.send(input.value);
    input.value = '';
    input.style.height = '';
    chat.__hasDraft = false;
    chat.__draftLength = 0;
  });
}

function stop(this: AgentChat): void {
  this.__attempt(() => this.cancel());
}
