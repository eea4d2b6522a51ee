import { DEFAULT_TRACES_ENDPOINT } from './tracing.js';

/** How serious a doctor finding is: `error` means traces will not reach the dashboard. */
export type DoctorLevel = 'ok' | 'info' | 'warning' | 'error';

/** Codes of doctor findings. */
export const DOCTOR_CODES = [
  'tracing_key_present',
  'no_api_key',
  'demo_model',
  'tracing_disabled_env',
  'tracing_disabled_node_env_test',
  'tracing_disabled_option',
  'non_openai_base_url',
  'non_openai_base_url_spans',
  'organization_project_not_sent',
  'endpoint_overridden',
  'key_format',
] as const;
export type DoctorCode = (typeof DOCTOR_CODES)[number];

/** One thing doctor found. */
export interface DoctorFinding {
  code: DoctorCode;
  level: DoctorLevel;
  message: string;
}

/** What doctor found; `ok` is false when any finding is an `error`. */
export interface DoctorReport {
  ok: boolean;
  findings: DoctorFinding[];
}

/** Options of {@link doctor}: the values the runner would use when they are not in the environment. */
export interface DoctorOptions {
  tracing?: { disabled?: boolean; apiKey?: string; endpoint?: string };
}

const truthy = (v: string | undefined) => v === 'true' || v === '1';

function isOpenAIHost(url: string): boolean {
  try {
    const host = new URL(url).hostname;
    return host === 'api.openai.com' || host.endsWith('.openai.com');
  } catch {
    return false;
  }
}

/**
 * Checks the configuration and says in plain words why traces would not show in the OpenAI dashboard.
 *
 * @example
 * const report = doctor(process.env);
 * if (!report.ok) console.warn(formatDoctorReport(report));
 */
export function doctor(env: NodeJS.ProcessEnv = process.env, options: DoctorOptions = {}): DoctorReport {
  const findings: DoctorFinding[] = [];
  const add = (code: DoctorCode, level: DoctorLevel, message: string) =>
    findings.push({ code, level, message });
  const modelKey = env.OPENAI_API_KEY || undefined;
  const tracingKey = options.tracing?.apiKey ?? (env.OPENAI_TRACING_API_KEY || undefined);
  const key = tracingKey ?? modelKey;
  const baseURL = env.OPENAI_BASE_URL || undefined;
  const endpoint = options.tracing?.endpoint ?? (env.THREADLINE_TRACING_ENDPOINT || undefined);

  if (!modelKey) {
    add('demo_model', 'info', 'OPENAI_API_KEY is not set: the agent uses the offline demo model.');
  }
  if (!key) {
    add(
      'no_api_key',
      'error',
      'No key to export traces with: set OPENAI_API_KEY (or OPENAI_TRACING_API_KEY for a separate tracing key). Without one the SDK skips every export.',
    );
  } else {
    add(
      'tracing_key_present',
      'ok',
      `Traces are exported with ${tracingKey ? 'OPENAI_TRACING_API_KEY' : 'OPENAI_API_KEY'}.`,
    );
    if (!/^sk-/.test(key)) {
      add(
        'key_format',
        'warning',
        'The tracing key does not look like an OpenAI key (sk-...); the ingest endpoint will likely reject it.',
      );
    }
  }
  if (truthy(env.OPENAI_AGENTS_DISABLE_TRACING)) {
    add(
      'tracing_disabled_env',
      'error',
      'OPENAI_AGENTS_DISABLE_TRACING is set: the SDK records no traces. Unset it.',
    );
  }
  if (env.NODE_ENV === 'test') {
    add(
      'tracing_disabled_node_env_test',
      'error',
      'NODE_ENV=test: the Agents SDK turns tracing off in tests. Use another NODE_ENV, or call setTracingDisabled(false) on purpose.',
    );
  }
  if (options.tracing?.disabled) {
    add(
      'tracing_disabled_option',
      'error',
      'Tracing is turned off in the runner options (tracing.disabled).',
    );
  }
  if (baseURL && !isOpenAIHost(baseURL)) {
    if (!tracingKey) {
      add(
        'non_openai_base_url',
        'error',
        `OPENAI_BASE_URL points at ${baseURL}, not OpenAI, and no OPENAI_TRACING_API_KEY is set: traces would be sent to OpenAI with that provider's key and be rejected. Set OPENAI_TRACING_API_KEY to a real OpenAI key.`,
      );
    }
    add(
      'non_openai_base_url_spans',
      'warning',
      `With a non-OpenAI model endpoint (${baseURL}) response spans carry ids the dashboard cannot open; traces still show the agent and tool spans.`,
    );
  }
  const org = env.OPENAI_ORG_ID || env.OPENAI_ORGANIZATION;
  const project = env.OPENAI_PROJECT_ID || env.OPENAI_PROJECT;
  if (org || project) {
    add(
      'organization_project_not_sent',
      'warning',
      `${[org ? 'OPENAI_ORG_ID' : '', project ? 'OPENAI_PROJECT_ID' : ''].filter(Boolean).join(' and ')} set, but the trace exporter does not send organization/project: traces land in the key's default project. Use a key scoped to the project you look at.`,
    );
  }
  if (endpoint && endpoint.replace(/\/$/, '') !== DEFAULT_TRACES_ENDPOINT) {
    add('endpoint_overridden', 'warning', `Traces are exported to ${endpoint}, not to the OpenAI dashboard.`);
  }
  return { ok: !findings.some((f) => f.level === 'error'), findings };
}

/** Renders a report as plain lines for a terminal or a log. */
export function formatDoctorReport(report: DoctorReport): string {
  const mark: Record<DoctorLevel, string> = { ok: 'ok  ', info: 'info', warning: 'warn', error: 'FAIL' };
  const lines = report.findings.map((f) => `  [${mark[f.level]}] ${f.message} (${f.code})`);
  const head = report.ok
    ? 'threadline-agent doctor: traces can reach the OpenAI dashboard.'
    : 'threadline-agent doctor: traces will NOT reach the OpenAI dashboard.';
  return [head, ...lines].join('\n');
}
