import { doctor, formatDoctorReport } from './doctor.js';
import { createRunner } from './runner.js';
import { serveAgent } from './serve.js';

const USAGE = `Usage: threadline-agent <command>

Commands:
  doctor [--json]   Check why traces would not reach the OpenAI dashboard (exit 1 on a blocking problem)
  serve             Start the agent service (env: THREADLINE_AGENT_SECRET (>= 32 bytes) required,
                    THREADLINE_AGENT_PORT default 8787, THREADLINE_AGENT_HOST default 127.0.0.1)
`;

/**
 * The `threadline-agent` command. Returns the exit code, or null while `serve` keeps running.
 * @internal exported for tests
 */
export async function runCli(
  argv: string[],
  env: NodeJS.ProcessEnv,
  io: { out(line: string): void; err(line: string): void } = {
    out: (l) => process.stdout.write(`${l}\n`),
    err: (l) => process.stderr.write(`${l}\n`),
  },
): Promise<number | null> {
  const [command, ...rest] = argv;
  if (command === 'doctor') {
    const report = doctor(env);
    io.out(rest.includes('--json') ? JSON.stringify(report, null, 2) : formatDoctorReport(report));
    return report.ok ? 0 : 1;
  }
  if (command === 'serve') {
    const secret = env.THREADLINE_AGENT_SECRET;
    if (!secret || Buffer.byteLength(secret) < 32) {
      io.err('threadline-agent serve: set THREADLINE_AGENT_SECRET to a secret of at least 32 bytes.');
      return 2;
    }
    const port = Number(env.THREADLINE_AGENT_PORT ?? 8787);
    if (!Number.isInteger(port) || port < 0 || port > 65_535) {
      io.err(
        `threadline-agent serve: THREADLINE_AGENT_PORT must be a port number (0-65535), got "${env.THREADLINE_AGENT_PORT}".`,
      );
      return 2;
    }
    const served = await serveAgent(createRunner({ env }), {
      auth: { sharedSecret: secret },
      port,
      host: env.THREADLINE_AGENT_HOST ?? '127.0.0.1',
    });
    const stop = () => void served.close({ deadlineMs: 10_000 }).then(() => process.exit(0));
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
    return null;
  }
  io.err(USAGE);
  return command === undefined || command === '--help' || command === 'help' ? 0 : 2;
}
