import {
  BatchTraceProcessor,
  OpenAITracingExporter,
  getGlobalTraceProvider,
  setTraceProcessors,
  type Span,
  type Trace,
  type TracingProcessor,
} from '@openai/agents';

/** The OpenAI traces ingest endpoint the SDK exports to by default. */
export const DEFAULT_TRACES_ENDPOINT = 'https://api.openai.com/v1/traces/ingest';

/** Tracing options of {@link createRunner}. */
export interface TracingOptions {
  /** Turn tracing off for runs of this runner (default false). The SDK also turns it off under NODE_ENV=test. */
  disabled?: boolean;
  /** Trace name shown in the dashboard (default "Threadline agent run"). */
  workflowName?: string;
  /** Include model and tool inputs/outputs in spans (default true). */
  includeSensitiveData?: boolean;
  /** Key used to export traces (default: env OPENAI_TRACING_API_KEY, then OPENAI_API_KEY). */
  apiKey?: string;
  /** Ingest endpoint (default: env THREADLINE_TRACING_ENDPOINT, then the OpenAI endpoint). */
  endpoint?: string;
  /** Replace the exporter entirely with these processors. */
  processors?: TracingProcessor[];
  /** Batch processor delay between exports in ms (default 5000). */
  scheduleDelayMs?: number;
  /** Most spans queued before new ones are dropped (default 8192). */
  maxQueueSize?: number;
  /** Export attempts per batch (default 3), and the first retry delay in ms (default 1000). */
  exportMaxRetries?: number;
  exportBaseDelayMs?: number;
  /** Install the processors globally when the runner is created (default true). The SDK's tracing is global. */
  install?: boolean;
}

/** Records which trace ids really started, so RUN_FINISHED only carries a trace id the dashboard can have. */
class StartedTraces implements TracingProcessor {
  readonly #ids = new Set<string>();
  readonly #max = 10_000;
  async onTraceStart(trace: Trace): Promise<void> {
    this.#ids.add(trace.traceId);
    if (this.#ids.size > this.#max) this.#ids.delete(this.#ids.values().next().value as string);
  }
  async onTraceEnd(): Promise<void> {}
  async onSpanStart(_span: Span<never>): Promise<void> {}
  async onSpanEnd(_span: Span<never>): Promise<void> {}
  async shutdown(): Promise<void> {}
  async forceFlush(): Promise<void> {}
  /** True once, then forgets the id. */
  take(id: string): boolean {
    return this.#ids.delete(id);
  }
}

const started = new StartedTraces();

/** Resolved tracing settings, as used by the runner and reported by `doctor`. */
export interface ResolvedTracing {
  disabled: boolean;
  workflowName: string;
  includeSensitiveData: boolean;
  apiKey: string | undefined;
  endpoint: string;
}

/** Resolves tracing options against the environment. */
export function resolveTracing(
  options: TracingOptions | false | undefined,
  env: NodeJS.ProcessEnv,
): ResolvedTracing {
  const o = options || {};
  return {
    disabled: options === false || o.disabled === true,
    workflowName: o.workflowName ?? 'Threadline agent run',
    includeSensitiveData: o.includeSensitiveData ?? true,
    apiKey: o.apiKey ?? (env.OPENAI_TRACING_API_KEY || undefined) ?? (env.OPENAI_API_KEY || undefined),
    endpoint: o.endpoint ?? (env.THREADLINE_TRACING_ENDPOINT || undefined) ?? DEFAULT_TRACES_ENDPOINT,
  };
}

/**
 * Replaces the SDK's global trace processors with an explicitly configured exporter (endpoint and key
 * overridable), plus a recorder of started trace ids. Called by {@link createRunner}; call it yourself when
 * `install: false`.
 */
export function installTracing(
  options: TracingOptions | false | undefined,
  env: NodeJS.ProcessEnv = process.env,
): void {
  const resolved = resolveTracing(options, env);
  const o = options || {};
  const processors = o.processors ?? [
    new BatchTraceProcessor(
      new OpenAITracingExporter({
        ...(resolved.apiKey ? { apiKey: resolved.apiKey } : {}),
        endpoint: resolved.endpoint,
        maxRetries: o.exportMaxRetries ?? 3,
        baseDelay: o.exportBaseDelayMs ?? 1000,
        maxDelay: 30_000,
      }),
      { scheduleDelay: o.scheduleDelayMs ?? 5000, maxQueueSize: o.maxQueueSize ?? 8192 },
    ),
  ];
  setTraceProcessors([...processors, started]);
}

/** True if a trace with this id was started (tracing on); forgets it. */
export function traceStarted(traceId: string): boolean {
  return started.take(traceId);
}

let flushing: Promise<void> | null = null;
let again = false;
const pending = new Set<Promise<void>>();

/**
 * Exports everything buffered now. Concurrent calls coalesce: at most one flush runs and one more is queued.
 * Never rejects (export failures are logged by the SDK).
 */
export function flushTraces(): Promise<void> {
  if (flushing) {
    again = true;
    return flushing;
  }
  const run = async (): Promise<void> => {
    do {
      again = false;
      try {
        await getGlobalTraceProvider().forceFlush();
      } catch {
        // Export problems must never fail a run; the exporter logs them.
      }
    } while (again);
  };
  const p = run().finally(() => {
    flushing = null;
    pending.delete(p);
  });
  flushing = p;
  pending.add(p);
  return p;
}

/** Waits for running flushes, flushes once more, bounded by `deadlineMs` (default 5000). */
export async function drainTraces(deadlineMs = 5000): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, deadlineMs);
    timer.unref();
  });
  await Promise.race([Promise.all([...pending]).then(() => flushTraces()), deadline]);
  clearTimeout(timer);
}
