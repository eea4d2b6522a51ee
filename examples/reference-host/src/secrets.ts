import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { HostError } from './errors.js';

/** The secrets the host needs. Cookies are random opaque session ids (not signed), so no cookie secret exists. */
export interface HostSecrets {
  /** HMAC key of the act-as tokens the relay mints for the agent's tool calls. */
  toolsTokenSecret: string;
  /** Bearer credential the API presents to the agent service. */
  agentSharedSecret: string;
}

/** Name of the generated secrets file inside DATA_DIR. */
export const SECRETS_FILE = 'secrets.json';

const SecretsFileSchema = z.object({
  toolsTokenSecret: z.string().min(32),
  agentSharedSecret: z.string().min(32),
});

const generate = () => randomBytes(32).toString('base64url');

/**
 * Returns the host's secrets: the ones given in settings win; the others come from `DATA_DIR/secrets.json`,
 * which is created on first start with fresh random values and mode 0600. A secrets file readable by other
 * users is tightened to 0600; a damaged one is an error, never silently replaced (that would sign everyone out
 * in a way nobody could explain).
 */
export function loadSecrets(
  dataDir: string,
  given: { toolsTokenSecret?: string | undefined; agentSharedSecret?: string | undefined } = {},
): HostSecrets {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const file = join(dataDir, SECRETS_FILE);
  let stored: HostSecrets;
  let text: string | undefined;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new HostError('invalid_config', `Cannot read ${file}: ${(err as Error).message}`, { cause: err });
    }
  }
  if (text === undefined) {
    stored = { toolsTokenSecret: generate(), agentSharedSecret: generate() };
    // Write to a temp file and rename so a crash never leaves a half-written secrets file behind.
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, `${JSON.stringify(stored, null, 2)}\n`, { mode: 0o600, flag: 'wx' });
    renameSync(tmp, file);
  } else {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    const r = SecretsFileSchema.safeParse(parsed);
    if (!r.success) {
      throw new HostError(
        'invalid_config',
        `${file} is damaged. Delete it to generate new secrets (everyone stays signed in; running agent calls fail once).`,
      );
    }
    stored = r.data;
    if ((statSync(file).mode & 0o077) !== 0) chmodSync(file, 0o600);
  }
  return {
    toolsTokenSecret: given.toolsTokenSecret ?? stored.toolsTokenSecret,
    agentSharedSecret: given.agentSharedSecret ?? stored.agentSharedSecret,
  };
}
