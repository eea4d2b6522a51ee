// Registers <agent-chat>: importing this module (or the package's main entry) defines the element. The class
// itself is in agent-chat-element.ts, which defines nothing.
import { AgentChat } from './agent-chat-element.js';

export { AgentChat };

if (!customElements.get('agent-chat')) customElements.define('agent-chat', AgentChat);

declare global {
  interface HTMLElementTagNameMap {
    'agent-chat': AgentChat;
  }
}
