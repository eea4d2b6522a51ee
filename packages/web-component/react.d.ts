// React typings for <agent-chat>: `import '@threadline/web-component/react'` in a TSX project registers the
// element and declares it in React's JSX.IntrinsicElements (React 19 passes properties and `on…` custom
// events to custom elements; both are typed here).
import type { DetailedHTMLProps, HTMLAttributes } from 'react';
import type {
  AgentChat,
  AgentChatConnectionDetail,
  AgentChatErrorDetail,
  AgentChatEventDetail,
  AgentChatRunFinishedDetail,
} from './dist/index.js';

/** The attributes, properties and events of `<agent-chat>` in JSX. */
export interface AgentChatJsxProps extends DetailedHTMLProps<HTMLAttributes<AgentChat>, AgentChat> {
  /** WebSocket URL of the relay (`wss://…`). */
  endpoint?: string;
  /** The thread to show (attribute form). */
  'thread-id'?: string;
  /** The thread to show (property form). */
  threadId?: string;
  placeholder?: string;
  readonly?: boolean;
  'allow-send-while-running'?: boolean;
  allowSendWhileRunning?: boolean;
  transport?: AgentChat['transport'];
  reconnectOptions?: AgentChat['reconnectOptions'];
  limits?: AgentChat['limits'];
  'onagent-chat:event'?: (event: CustomEvent<AgentChatEventDetail>) => void;
  'onagent-chat:run-finished'?: (event: CustomEvent<AgentChatRunFinishedDetail>) => void;
  'onagent-chat:error'?: (event: CustomEvent<AgentChatErrorDetail>) => void;
  'onagent-chat:connection'?: (event: CustomEvent<AgentChatConnectionDetail>) => void;
}

declare module 'react' {
  namespace JSX {
    interface IntrinsicElements {
      'agent-chat': AgentChatJsxProps;
    }
  }
}
