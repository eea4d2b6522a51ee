/**
 * @threadline/web-component: the `<agent-chat>` element. Importing this module defines the element.
 *
 * @example
 * import '@threadline/web-component';
 * document.body.insertAdjacentHTML('beforeend', '<agent-chat endpoint="wss://api.example.com/ws" thread-id="t-1"></agent-chat>');
 */
export { AgentChat } from './agent-chat.js';
export * from './element.js';
