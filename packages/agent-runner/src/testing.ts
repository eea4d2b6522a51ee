/**
 * Test doubles for users' own tests: a local fake OpenAI server that speaks the Responses API, Chat
 * Completions and trace ingest on 127.0.0.1.
 */
export { createFakeOpenAIServer } from './fake-openai-server.js';
export type {
  FakeTurn,
  FakeUsage,
  FakeOpenAIServer,
  FakeOpenAIServerOptions,
  CapturedModelRequest,
  CapturedTraceIngest,
} from './fake-openai-server.js';
