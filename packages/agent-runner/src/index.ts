/**
 * @threadline/agent-runner: the Threadline agent service on the OpenAI Agents SDK. Runs a thread's message as
 * an SDK run, streams contract events over SSE, keeps agent memory behind the API, and traces every run.
 */
export { createRunner } from './runner.js';
export { localTool } from './local-tool.js';
export { abortReason } from './run-errors.js';
export { DEFAULT_AGENT_RUNNER_TUNING } from './runner-options.js';
export type {
  AgentRunner,
  AgentRunnerOptions,
  AgentRunnerTuning,
  DeprecatedTopLevelTuning,
  RunContextData,
  AgentFactoryContext,
  Runner,
  CreateRunnerOptions,
} from './runner-options.js';
export { createAgentServer } from './server.js';
export type { AgentServer, AgentServerOptions, AgentRequestListener } from './server.js';
export { serveAgent } from './serve.js';
export type { ServeAgentOptions, ServedAgent } from './serve.js';
export { AGENT_SERVER_ERROR_CODES } from './service-protocol.js';
export type { AgentAuth } from './auth.js';
export { AgentMemory, ToolSession, DEFAULT_HISTORY_ITEMS, MAX_HISTORY_ITEMS } from './agent-memory.js';
export type { AgentMemoryOptions, ToolSessionOptions, HistoryWindow } from './agent-memory.js';
export {
  DEFAULT_COMPACT_AFTER_ITEMS,
  DEMO_COMPACTION_PREFIX,
  createDemoCompactionClient,
} from './compaction.js';
export type { CompactionOptions, CompactionClient } from './compaction.js';
export { EventMapper } from './event-mapper.js';
export type { ToolOutcome } from './event-mapper.js';
export { createDemoModelProvider, DemoModel } from './demo-model.js';
export type { DemoModelOptions } from './demo-model.js';
export {
  installTracing,
  flushTraces,
  drainTraces,
  resolveTracing,
  DEFAULT_TRACES_ENDPOINT,
} from './tracing.js';
export type { TracingOptions, ResolvedTracing } from './tracing.js';
export { doctor, formatDoctorReport, DOCTOR_CODES } from './doctor.js';
export type { DoctorReport, DoctorFinding, DoctorLevel, DoctorCode, DoctorOptions } from './doctor.js';
export { AgentRunnerError, AGENT_RUNNER_ERROR_CODES } from './errors.js';
export type { AgentRunnerErrorCode } from './errors.js';
