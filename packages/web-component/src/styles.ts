import { css } from 'lit';

/*
 * Every public custom property has a light and a dark default; the page overrides either by setting the
 * property on the element (or an ancestor). Internal --_x variables hold the resolved values.
 */
export const styles = css`
  :host {
    --_bg: var(--agent-chat-bg, #ffffff);
    --_fg: var(--agent-chat-fg, #1b1f24);
    --_muted: var(--agent-chat-muted, #5b6470);
    --_border: var(--agent-chat-border, #d6dae0);
    --_accent: var(--agent-chat-accent, #2458d6);
    --_accent-fg: var(--agent-chat-accent-fg, #ffffff);
    --_user-bg: var(--agent-chat-user-bg, #e8effd);
    --_user-fg: var(--agent-chat-user-fg, var(--_fg));
    --_assistant-bg: var(--agent-chat-assistant-bg, #f4f5f7);
    --_code-bg: var(--agent-chat-code-bg, #eceef1);
    --_error: var(--agent-chat-error, #b42318);
    --_ok: var(--agent-chat-success, #1a7f37);
    --_focus: var(--agent-chat-focus-ring, #2458d6);
    --_radius: var(--agent-chat-radius, 10px);
    --_gap: var(--agent-chat-gap, 10px);
    display: flex;
    flex-direction: column;
    box-sizing: border-box;
    min-height: 240px;
    height: var(--agent-chat-height, 480px);
    color-scheme: light dark;
    background: var(--_bg);
    color: var(--_fg);
    font: var(--agent-chat-font-size, 15px) / 1.5
      var(--agent-chat-font, system-ui, -apple-system, 'Segoe UI', sans-serif);
    border: 1px solid var(--_border);
    border-radius: var(--_radius);
    overflow: hidden;
  }
  @media (prefers-color-scheme: dark) {
    :host {
      --_bg: var(--agent-chat-bg, #16181d);
      --_fg: var(--agent-chat-fg, #e6e8eb);
      --_muted: var(--agent-chat-muted, #a0a8b4);
      --_border: var(--agent-chat-border, #343a44);
      --_accent: var(--agent-chat-accent, #6d9cff);
      --_accent-fg: var(--agent-chat-accent-fg, #0b1020);
      --_user-bg: var(--agent-chat-user-bg, #24324f);
      --_assistant-bg: var(--agent-chat-assistant-bg, #20232a);
      --_code-bg: var(--agent-chat-code-bg, #2a2e37);
      --_error: var(--agent-chat-error, #ff8a80);
      --_ok: var(--agent-chat-success, #6fdd8b);
      --_focus: var(--agent-chat-focus-ring, #8fb3ff);
    }
  }
  :host([hidden]) {
    display: none;
  }
  *,
  *::before,
  *::after {
    box-sizing: inherit;
  }
  .status {
    display: flex;
    align-items: center;
    gap: 8px;
    padding: 4px var(--_gap);
    font-size: 0.85em;
    color: var(--_muted);
    border-bottom: 1px solid var(--_border);
  }
  .dot {
    width: 8px;
    height: 8px;
    border-radius: 50%;
    background: var(--_muted);
  }
  .status[data-state='connected'] .dot {
    background: var(--_ok);
  }
  .status[data-state='disconnected'] .dot {
    background: var(--_error);
  }
  .messages {
    flex: 1;
    overflow-y: auto;
    padding: var(--_gap);
    display: flex;
    flex-direction: column;
    gap: var(--_gap);
  }
  .viewport {
    position: relative;
    flex: 1;
    min-height: 0;
    display: flex;
    flex-direction: column;
  }
  .row {
    display: flex;
    flex-direction: column;
    align-items: flex-start;
    max-width: 85%;
    align-self: flex-start;
    gap: 2px;
  }
  .row.mine {
    align-self: flex-end;
    flex-direction: row-reverse;
    align-items: center;
    gap: 8px;
  }
  .row > .msg {
    max-width: 100%;
  }
  .meta {
    display: flex;
    align-items: center;
    gap: 6px;
    font-size: 0.8em;
    color: var(--_muted);
  }
  .meta time,
  .mine .meta button {
    opacity: 0;
  }
  .row:hover .meta *,
  .row:focus-within .meta * {
    opacity: 1;
  }
  @media (hover: none) {
    .meta * {
      opacity: 1 !important;
    }
  }
  .code {
    display: flex;
    flex-direction: column;
    align-items: flex-end;
  }
  .code pre {
    align-self: stretch;
    margin-top: 0;
  }
  .code-copy {
    font-size: 0.8em;
  }
  .jump {
    position: absolute;
    bottom: 12px;
    left: 50%;
    transform: translateX(-50%);
    border-radius: 999px;
    box-shadow: 0 2px 8px rgb(0 0 0 / 0.25);
    font-size: 0.85em;
  }
  .placeholder {
    margin: auto;
    color: var(--_muted);
    text-align: center;
  }
  .msg {
    max-width: 85%;
    padding: calc(var(--_gap) * 0.8) var(--_gap);
    border-radius: var(--_radius);
    overflow-wrap: anywhere;
  }
  .user {
    align-self: flex-end;
    background: var(--_user-bg);
    color: var(--_user-fg);
    white-space: pre-wrap;
  }
  .user[data-status='sending'] {
    opacity: 0.7;
  }
  .assistant {
    align-self: flex-start;
    background: var(--_assistant-bg);
  }
  .assistant > div > :first-child {
    margin-top: 0;
  }
  .assistant > div > :last-child {
    margin-bottom: 0;
  }
  .assistant p,
  .assistant ul,
  .assistant ol,
  .assistant pre,
  .assistant blockquote {
    margin: 0.5em 0;
  }
  .assistant h3,
  .assistant h4,
  .assistant h5,
  .assistant h6 {
    margin: 0.6em 0 0.3em;
    font-size: 1em;
  }
  .assistant h3 {
    font-size: 1.15em;
  }
  .assistant ul,
  .assistant ol {
    padding-left: 1.4em;
  }
  .assistant blockquote {
    padding-left: 0.8em;
    border-left: 3px solid var(--_border);
    color: var(--_muted);
  }
  code {
    font-family: var(--agent-chat-code-font, ui-monospace, SFMono-Regular, Menlo, Consolas, monospace);
    font-size: 0.9em;
    background: var(--_code-bg);
    padding: 0.1em 0.3em;
    border-radius: 4px;
  }
  pre {
    overflow-x: auto;
    background: var(--_code-bg);
    padding: 0.6em 0.8em;
    border-radius: calc(var(--_radius) * 0.6);
  }
  pre code {
    padding: 0;
    background: none;
  }
  a {
    color: var(--_accent);
  }
  .tool,
  .run-error,
  .failed {
    align-self: flex-start;
    display: flex;
    align-items: center;
    gap: 8px;
    font-size: 0.9em;
    color: var(--_muted);
  }
  .tool {
    flex-wrap: wrap;
  }
  .tool pre,
  .tool .run-error {
    flex-basis: 100%;
    margin: 0;
  }
  .tool[data-status='failed'],
  .run-error,
  .failed {
    color: var(--_error);
  }
  .run-error[data-code='cancelled'] {
    color: var(--_muted);
  }
  .failed {
    align-self: flex-end;
  }
  .divider {
    display: flex;
    align-items: center;
    gap: 8px;
    font-size: 0.8em;
    color: var(--_muted);
  }
  .divider::before,
  .divider::after {
    content: '';
    flex: 1;
    border-top: 1px solid currentColor;
    opacity: 0.4;
  }
  .spinner {
    width: 12px;
    height: 12px;
    border: 2px solid currentColor;
    border-right-color: transparent;
    border-radius: 50%;
    animation: spin 0.8s linear infinite;
  }
  .working {
    align-self: flex-start;
    padding: calc(var(--_gap) * 0.8) var(--_gap);
    border-radius: var(--_radius);
    background: var(--_assistant-bg);
  }
  .dots {
    display: flex;
    gap: 4px;
    padding: 0.35em 0;
  }
  .dots i {
    width: 7px;
    height: 7px;
    border-radius: 50%;
    background: var(--_muted);
    animation: pulse 1.2s ease-in-out infinite;
  }
  .dots i:nth-child(2) {
    animation-delay: 0.2s;
  }
  .dots i:nth-child(3) {
    animation-delay: 0.4s;
  }
  @keyframes pulse {
    50% {
      opacity: 0.25;
    }
  }
  @keyframes spin {
    to {
      transform: rotate(360deg);
    }
  }
  .composer {
    display: flex;
    gap: 8px;
    padding: var(--_gap);
    border-top: 1px solid var(--_border);
  }
  .composer {
    flex-wrap: wrap;
    align-items: flex-end;
  }
  .composer-foot {
    flex-basis: 100%;
    display: flex;
    gap: 8px;
    justify-content: space-between;
    font-size: 0.85em;
    color: var(--_muted);
  }
  .note,
  .counter[data-over] {
    color: var(--_error);
  }
  .counter {
    margin-left: auto;
    white-space: nowrap;
    font-variant-numeric: tabular-nums;
  }
  textarea {
    flex: 1;
    min-width: 0;
    resize: none;
    min-height: 2.6em;
    max-height: min(14em, 40vh);
    overflow-y: auto;
    font: inherit;
    color: inherit;
    background: transparent;
    padding: 0.5em 0.7em;
    border: 1px solid var(--_border);
    border-radius: calc(var(--_radius) * 0.7);
  }
  button {
    font: inherit;
    cursor: pointer;
    padding: 0.4em 0.9em;
    border-radius: calc(var(--_radius) * 0.7);
    border: 1px solid var(--_accent);
    background: var(--_accent);
    color: var(--_accent-fg);
  }
  button.secondary {
    background: transparent;
    color: var(--_accent);
  }
  button.link {
    padding: 0 0.3em;
    border: none;
    background: none;
    color: var(--_accent);
    text-decoration: underline;
  }
  button:disabled {
    cursor: not-allowed;
    opacity: 0.5;
  }
  :focus-visible {
    outline: 2px solid var(--_focus);
    outline-offset: 2px;
  }
  textarea:focus-visible {
    outline-offset: 0;
  }
  .sr-only {
    position: absolute;
    width: 1px;
    height: 1px;
    overflow: hidden;
    clip: rect(0 0 0 0);
    clip-path: inset(50%);
    white-space: nowrap;
  }
  @media (prefers-reduced-motion: reduce) {
    .dots i {
      animation: none;
    }
    .spinner {
      animation: none;
      border-right-color: currentColor;
      opacity: 0.6;
    }
    .messages {
      scroll-behavior: auto;
    }
  }
`;
