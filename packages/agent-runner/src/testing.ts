/**
 * Test doubles for users' own tests: a local fake OpenAI server that speaks the Responses API (with its
 * compact endpoint), Chat Completions and trace ingest on 127.0.0.1.
 */
export { createFakeOpenAIServer } from './fake-openai/server.js';
export { FAKE_COMPACTION_PREFIX } from './fake-openai/compact.js';
export type {
  FakeTurn,
  FakeUsage,
  FakeOpenAIServer,
  FakeOpenAIServerOptions,
  CapturedModelRequest,
  CapturedTraceIngest,
  CapturedCompactRequest,
} from './fake-openai/types.js';
