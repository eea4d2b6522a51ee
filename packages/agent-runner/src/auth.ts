import { createHash, timingSafeEqual, type KeyObject } from 'node:crypto';
import { jwtVerify, type CryptoKey } from 'jose';
import { AGENT_SERVICE_AUDIENCE } from '@threadline/contracts';
import { AgentRunnerError } from './errors.js';

/** How the service checks the API's credential on every request. */
export type AgentAuth =
  | {
      /** A shared secret of at least 32 bytes; the bearer value must equal it. */
      sharedSecret: string;
    }
  | {
      /** A JWT from the API with audience `threadline-agent`: HS256 with `secret`, or EdDSA/ES256 with `publicKey`. */
      jwt: {
        secret?: string | Uint8Array;
        publicKey?: CryptoKey | KeyObject;
        issuer: string;
        algorithms?: string[];
        clockToleranceSeconds?: number;
      };
    };

/** Checks bearer credentials; resolves true only for a valid one. Never throws for bad input. */
export type CredentialCheck = (authorization: string | undefined) => Promise<boolean>;

const digest = (v: string | Uint8Array) => createHash('sha256').update(v).digest();

/** Builds the credential check for {@link AgentAuth}; throws `invalid_options` on a weak or missing secret. */
export function createCredentialCheck(auth: AgentAuth): CredentialCheck {
  if ('sharedSecret' in auth) {
    if (typeof auth.sharedSecret !== 'string' || Buffer.byteLength(auth.sharedSecret) < 32) {
      throw new AgentRunnerError('invalid_options', 'auth.sharedSecret must be at least 32 bytes');
    }
    // Hashing both sides gives equal lengths, so the comparison time does not depend on the guess.
    const expected = digest(auth.sharedSecret);
    return async (header) => {
      const token = bearer(header);
      return token !== null && timingSafeEqual(digest(token), expected);
    };
  }
  const { secret, publicKey, issuer } = auth.jwt;
  if (!issuer) throw new AgentRunnerError('invalid_options', 'auth.jwt.issuer is required');
  let key: Uint8Array | CryptoKey | KeyObject;
  let algorithms: string[];
  if (secret !== undefined) {
    key = typeof secret === 'string' ? new TextEncoder().encode(secret) : secret;
    if (key.byteLength < 32)
      throw new AgentRunnerError('invalid_options', 'auth.jwt.secret must be at least 32 bytes');
    algorithms = auth.jwt.algorithms ?? ['HS256'];
  } else if (publicKey !== undefined) {
    key = publicKey;
    algorithms = auth.jwt.algorithms ?? ['EdDSA', 'ES256'];
  } else {
    throw new AgentRunnerError('invalid_options', 'auth.jwt needs a secret or a publicKey');
  }
  return async (header) => {
    const token = bearer(header);
    if (token === null) return false;
    try {
      await jwtVerify(token, key, {
        audience: AGENT_SERVICE_AUDIENCE,
        issuer,
        algorithms,
        clockTolerance: auth.jwt.clockToleranceSeconds ?? 5,
        requiredClaims: ['exp'],
      });
      return true;
    } catch {
      return false;
    }
  };
}

function bearer(header: string | undefined): string | null {
  if (!header || header.length > 16_384) return null;
  const m = /^Bearer ([^\s]+)$/.exec(header);
  return m?.[1] ?? null;
}
