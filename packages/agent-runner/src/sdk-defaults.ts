import { OpenAIProvider, type Model, type ModelProvider } from '@openai/agents';

/**
 * The model provider when neither `openai.apiKey` nor OPENAI_API_KEY is given: the Agents SDK's own defaults
 * (a client set with `setDefaultOpenAIClient()`, a key set with `setDefaultOpenAIKey()`) when they give an
 * OpenAI client, otherwise the fallback (the offline demo model). The SDK has no public getter for its key, so
 * the test is to ask its provider for a model: that builds the client, and fails without credentials. Decided
 * once, at the first model lookup, so setters called after `createRunner()` still count.
 */
export class SdkDefaultsProvider implements ModelProvider {
  readonly #sdk: OpenAIProvider;
  readonly #fallback: ModelProvider;
  readonly #onDecided: (usesSdk: boolean) => void;
  #decision: Promise<boolean> | undefined;

  constructor(options: {
    useResponses: boolean;
    fallback: ModelProvider;
    onDecided: (usesSdk: boolean) => void;
  }) {
    this.#sdk = new OpenAIProvider({ useResponses: options.useResponses });
    this.#fallback = options.fallback;
    this.#onDecided = options.onDecided;
  }

  /** True when the SDK's defaults give an OpenAI client. */
  usesSdk(modelName?: string): Promise<boolean> {
    this.#decision ??= Promise.resolve()
      .then(() => this.#sdk.getModel(modelName))
      .then(
        () => true,
        () => false,
      )
      .then((uses) => {
        this.#onDecided(uses);
        return uses;
      });
    return this.#decision;
  }

  async getModel(modelName?: string): Promise<Model> {
    return (await this.usesSdk(modelName))
      ? this.#sdk.getModel(modelName)
      : this.#fallback.getModel(modelName);
  }
}
