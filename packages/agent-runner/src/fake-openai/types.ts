// The public shapes of the fake OpenAI server: its script (turns), what it captures, its options and handle.

/** Token counts a scripted Responses API answer reports in `usage`. */
export interface FakeUsage {
  input: number;
  output: number;
}

/** One scripted model turn: what the fake server answers to the next model request. */
export type FakeTurn =
  | {
      /** An assistant text message. */
      type: 'text';
      text: string;
      /** Size of each streamed delta in characters (default 8). */
      chunkSize?: number;
      /** Delay between deltas in ms (default 0): a slow stream. */
      delayMs?: number;
      /** Token usage this response reports (Responses API; default 1 input, 1 output). */
      usage?: FakeUsage;
    }
  | {
      /** One or more function calls; their arguments are streamed in deltas. */
      type: 'tool_call';
      calls: { name: string; arguments: unknown; callId?: string }[];
      /** Assistant text streamed before the calls, in the same response. */
      text?: string;
      /** Size of each streamed text and arguments delta in characters (default 8). */
      chunkSize?: number;
      /** Delay before the response completes, in ms (default 0). */
      delayMs?: number;
      /** Token usage this response reports (Responses API; default 1 input, 1 output). */
      usage?: FakeUsage;
    }
  | {
      /**
       * A response cut short: Responses API `response.incomplete` (status `incomplete` with
       * `incomplete_details.reason`), Chat Completions `finish_reason: 'length'` or `'content_filter'`.
       */
      type: 'incomplete';
      /** The text produced before the cut. */
      text: string;
      /** Why it stopped (default `max_output_tokens`). */
      reason?: 'max_output_tokens' | 'content_filter';
      /** Size of each streamed delta in characters (default 8). */
      chunkSize?: number;
    }
  | {
      /** Answer the HTTP request itself with an error status (e.g. 500) and an OpenAI error body. */
      type: 'http_error';
      status: number;
      message?: string;
    }
  | {
      /**
       * The model fails after it started: Responses API `response.failed` (status `failed` with an `error`; a
       * non-streaming request gets that response object with HTTP 200), Chat Completions an error chunk
       * (non-streaming: HTTP 500).
       */
      type: 'response_failed';
      message?: string;
      /** Text deltas sent before the failure. */
      textBefore?: string;
    }
  | {
      /**
       * A stream that breaks with an error event: Responses API `error` event, Chat Completions an error chunk;
       * a non-streaming request gets HTTP 500 with the error.
       */
      type: 'stream_error';
      message?: string;
      /** The error's `code` (default `server_error`). */
      code?: string;
      /** Text deltas sent before the error. */
      textBefore?: string;
    };

/** A model request as the fake server received it. */
export interface CapturedModelRequest {
  api: 'responses' | 'chat_completions';
  headers: Record<string, string | string[] | undefined>;
  body: Record<string, unknown>;
}

/** A compaction request as the fake server received it (`POST /v1/responses/compact`). */
export interface CapturedCompactRequest {
  headers: Record<string, string | string[] | undefined>;
  body: Record<string, unknown>;
}

/** A trace ingest request as the fake server received it (`POST /v1/traces/ingest`). */
export interface CapturedTraceIngest {
  headers: Record<string, string | string[] | undefined>;
  body: { data: Record<string, unknown>[] };
}

/** Options of {@link createFakeOpenAIServer}. */
export interface FakeOpenAIServerOptions {
  /** Turns answered in order, one per model request. */
  turns?: FakeTurn[];
  /**
   * Picks the turn for a request when the queue is empty (e.g. by looking at the input). Without it, a
   * request with no scripted turn gets HTTP 500 "no scripted turn", so a test that expects fewer model
   * calls fails loudly.
   */
  respond?: (request: CapturedModelRequest) => FakeTurn | undefined;
  /** Largest accepted request body in bytes (default 8 MiB); larger gets 413. */
  maxBodyBytes?: number;
  /** Most requests and trace ingests kept for inspection (default 1000 each); older ones are dropped. */
  maxCaptured?: number;
  /** Status the trace ingest endpoint answers with (default 200). */
  ingestStatus?: number;
  /** Called right after each streamed text delta is written (index within its stream); for latency benchmarks. */
  onDeltaWritten?: (index: number) => void;
}

/** A running fake OpenAI server. */
export interface FakeOpenAIServer {
  /** Base URL for the `openai` client, ending in `/v1`. */
  readonly baseURL: string;
  /** The trace ingest endpoint, for `OpenAITracingExporter({ endpoint })`. */
  readonly tracesEndpoint: string;
  /** Model requests received, oldest first. */
  readonly requests: CapturedModelRequest[];
  /** Trace ingest requests received, oldest first. */
  readonly traceIngests: CapturedTraceIngest[];
  /** Compaction requests received (`POST /v1/responses/compact`), oldest first. */
  readonly compactRequests: CapturedCompactRequest[];
  /** Appends turns to the script. */
  enqueue(...turns: FakeTurn[]): void;
  /** Every ingested trace or span item, flattened. */
  traceItems(): Record<string, unknown>[];
  /** Resolves once `predicate` holds for the ingested items (checked on each ingest), or rejects after `timeoutMs`. */
  waitForTraceItems(
    predicate: (items: Record<string, unknown>[]) => boolean,
    timeoutMs?: number,
  ): Promise<void>;
  /** Number of model responses still open (streams, and non-streaming answers not yet sent). */
  openStreams(): number;
  close(): Promise<void>;
}
