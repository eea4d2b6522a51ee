import { OpenAIProvider, getDefaultOpenAIClient, type ModelProvider } from '@openai/agents';
import OpenAI from 'openai';
import { createDemoCompactionClient, type CompactionClient, type ResolvedCompaction } from './compaction.js';
import { createDemoModelProvider } from './demo-model.js';
import { AgentRunnerError } from './errors.js';
import type { AgentRunnerOptions } from './runner-options.js';
import { SdkDefaultsProvider } from './sdk-defaults.js';

// Which model a runner's runs use, and which client compacts their agent memory: the given provider; OpenAI
// with a key (option or OPENAI_API_KEY); the Agents SDK's own defaults when the host set them; else the offline
// demo model. The last two are told apart at the first run (the SDK's setters may be called after createRunner).

/** A runner's model choice. */
export interface ModelChoice {
  provider: ModelProvider;
  /** True when the choice between the SDK's defaults and the demo model is made at the first run. */
  decidedLater: boolean;
  /** Settles a choice made at the first run (at once when already made); call before configuring a run. */
  decide(): Promise<void>;
  /** The client a run's compaction calls, decided like the model: given, the runner's, the SDK's, or the demo. */
  compactionClient(): Promise<CompactionClient>;
}

/** Makes the choice and logs it; `onDemoDecidedLater` runs when the first run settles on the demo model. */
export function chooseModel(input: {
  options: AgentRunnerOptions;
  env: NodeJS.ProcessEnv;
  logger: Pick<Console, 'info'>;
  model: AgentRunnerOptions['model'];
  compaction: ResolvedCompaction | undefined;
  onDemoDecidedLater: () => void;
}): ModelChoice {
  const { options, env, logger, model, compaction } = input;
  const modelName = typeof model === 'string' ? model : undefined;
  if (compaction && !compaction.client && options.modelProvider)
    throw new AgentRunnerError(
      'invalid_options',
      'with a custom modelProvider, compaction needs compaction.client (an OpenAI client)',
    );
  const useResponses = options.openai?.api !== 'chat_completions';
  const sdkClient = () =>
    (getDefaultOpenAIClient() as unknown as CompactionClient | undefined) ?? new OpenAI();
  const given = (client: CompactionClient | undefined) => async (): Promise<CompactionClient> =>
    compaction?.client ?? client ?? sdkClient();

  if (options.modelProvider)
    return {
      provider: options.modelProvider,
      decidedLater: false,
      decide: async () => {},
      compactionClient: given(undefined),
    };

  const apiKey = options.openai?.apiKey ?? (env.OPENAI_API_KEY || undefined);
  if (apiKey) {
    const baseURL = options.openai?.baseURL ?? (env.OPENAI_BASE_URL || undefined);
    const client = new OpenAI({
      apiKey,
      ...(baseURL ? { baseURL } : {}),
      maxRetries: options.openai?.maxRetries ?? 2,
    });
    logger.info(
      `[threadline-agent] model: ${modelName ?? 'custom'} via OpenAI${baseURL ? ` at ${baseURL}` : ''}`,
    );
    return {
      provider: new OpenAIProvider({ openAIClient: client, useResponses }),
      decidedLater: false,
      decide: async () => {},
      compactionClient: given(client),
    };
  }

  // No key here: the Agents SDK's own setters may hold one (checked at the first run).
  const sdkDefaults = new SdkDefaultsProvider({
    useResponses,
    fallback: createDemoModelProvider(),
    onDecided: (usesSdk) => {
      if (usesSdk) {
        // Traces then go out as the SDK would send them: with setTracingExportApiKey()'s key.
        logger.info(
          `[threadline-agent] model: ${modelName ?? 'custom'} via OpenAI (the Agents SDK's default client or key)`,
        );
        return;
      }
      logger.info(
        '[threadline-agent] model: offline demo model (no OPENAI_API_KEY, setDefaultOpenAIKey() or setDefaultOpenAIClient())',
      );
      input.onDemoDecidedLater();
    },
  });
  const demoCompaction = createDemoCompactionClient();
  return {
    provider: sdkDefaults,
    decidedLater: true,
    decide: async () => void (await sdkDefaults.usesSdk(modelName)),
    compactionClient: async () => {
      if (compaction?.client) return compaction.client;
      if (!(await sdkDefaults.usesSdk(modelName))) return demoCompaction;
      return sdkClient();
    },
  };
}
