import { randomUUID, type KeyObject } from 'node:crypto';
import {
  ACT_AS_AUDIENCE,
  ActAsClaimsSchema,
  IdSchema,
  LIMITS,
  ToolNameSchema,
  safeParse,
} from '@threadline/contracts';
import type { ActAsClaims } from '@threadline/contracts';
import { SignJWT, errors as joseErrors, jwtVerify } from 'jose';
import { z } from 'zod';
import { ToolsKitError } from './errors.js';
import { intOption } from './options.js';

/** Mints and checks act-as tokens: short-lived JWTs for one user, thread, run and set of tools. */
export interface TokenIssuer {
  /** Mints a token. Throws {@link ToolsKitError} `invalid_token_request` for bad ids, tool names or TTL. */
  issue(input: {
    userId: string;
    threadId: string;
    runId: string;
    tools: string[];
    ttlSeconds?: number;
  }): Promise<string>;
  /** Verifies a token and returns its claims. Throws {@link ToolsKitError} `token_invalid` or `token_expired`. */
  verify(token: string): Promise<ActAsClaims>;
}

/** Timing options shared by every issuer. */
export interface TokenTimingOptions {
  /** The `iss` claim minted and required. */
  issuer: string;
  /** Default lifetime of a minted token. Default 300 (5 minutes). */
  ttlSeconds?: number;
  /** Longest lifetime `issue` accepts and `verify` honours. Default 900; at most 3600. */
  maxTtlSeconds?: number;
  /** Clock skew tolerated when checking `exp`, `nbf` and `iat`. Default 5; at most 60. */
  clockToleranceSeconds?: number;
}

/** HS256 with a shared secret of at least 32 bytes. */
export interface SecretTokenIssuerOptions extends TokenTimingOptions {
  secret: string | Uint8Array;
}

/** EdDSA (Ed25519) or ES256 (P-256) with a key pair. Without `privateKey` the issuer can only verify. */
export interface KeyPairTokenIssuerOptions extends TokenTimingOptions {
  privateKey?: CryptoKey | KeyObject;
  publicKey: CryptoKey | KeyObject;
  algorithm: 'EdDSA' | 'ES256';
}

/** Options of {@link createTokenIssuer}. */
export type TokenIssuerOptions = SecretTokenIssuerOptions | KeyPairTokenIssuerOptions;

/** Hard ceiling on any act-as token's lifetime: they are meant to live minutes, not hours. */
export const MAX_TOKEN_TTL_SECONDS = 3600;
/** Shortest HS256 secret accepted, in bytes. */
export const MIN_SECRET_BYTES = 32;

const IssueInputSchema = z.strictObject({
  userId: IdSchema,
  threadId: IdSchema,
  runId: IdSchema,
  tools: z.array(ToolNameSchema).max(LIMITS.maxToolsPerToken),
  ttlSeconds: z.number().int().positive().optional(),
});

/**
 * Creates an act-as token issuer (jose). Verification pins the algorithm, the issuer, the audience
 * `threadline-tools`, the lifetime and the clock tolerance; `alg: none` and algorithm swaps are refused.
 * @example
 * const tokens = createTokenIssuer({ secret: process.env.TOOLS_SECRET!, issuer: 'my-api' });
 * const token = await tokens.issue({ userId: 'u1', threadId: 't1', runId: 'r1', tools: router.toolNames });
 * const claims = await tokens.verify(token);
 */
export function createTokenIssuer(options: TokenIssuerOptions): TokenIssuer {
  if (typeof options !== 'object' || options === null)
    throw new ToolsKitError('invalid_options', 'createTokenIssuer needs options');
  const issuer = options.issuer;
  if (typeof issuer !== 'string' || issuer.length === 0 || issuer.length > 256) {
    throw new ToolsKitError('invalid_options', 'issuer must be a non-empty string of at most 256 characters');
  }
  const maxTtl = intOption(options.maxTtlSeconds, 900, 1, MAX_TOKEN_TTL_SECONDS, 'maxTtlSeconds');
  const defaultTtl = intOption(options.ttlSeconds, Math.min(300, maxTtl), 1, maxTtl, 'ttlSeconds');
  const tolerance = intOption(options.clockToleranceSeconds, 5, 0, 60, 'clockToleranceSeconds');

  let algorithm: 'HS256' | 'EdDSA' | 'ES256';
  let signKey: Uint8Array | CryptoKey | KeyObject | undefined;
  let verifyKey: Uint8Array | CryptoKey | KeyObject;
  if ('secret' in options) {
    const secret =
      typeof options.secret === 'string' ? new TextEncoder().encode(options.secret) : options.secret;
    if (!(secret instanceof Uint8Array))
      throw new ToolsKitError('invalid_options', 'secret must be a string or a Uint8Array');
    if (secret.byteLength < MIN_SECRET_BYTES) {
      throw new ToolsKitError(
        'invalid_options',
        `the HS256 secret has ${secret.byteLength} bytes; use at least ${MIN_SECRET_BYTES} random bytes (e.g. openssl rand -base64 48)`,
      );
    }
    algorithm = 'HS256';
    signKey = verifyKey = new Uint8Array(secret);
  } else {
    if (options.algorithm !== 'EdDSA' && options.algorithm !== 'ES256') {
      throw new ToolsKitError(
        'invalid_options',
        'algorithm must be "EdDSA" or "ES256" (or pass `secret` for HS256)',
      );
    }
    if (!options.publicKey)
      throw new ToolsKitError('invalid_options', 'publicKey is required with a key pair');
    if (isKeyObject(options.publicKey) && options.publicKey.type !== 'public') {
      throw new ToolsKitError('invalid_options', 'publicKey must be a public key');
    }
    if (options.privateKey && isKeyObject(options.privateKey) && options.privateKey.type !== 'private') {
      throw new ToolsKitError('invalid_options', 'privateKey must be a private key');
    }
    algorithm = options.algorithm;
    signKey = options.privateKey;
    verifyKey = options.publicKey;
  }

  return {
    async issue(input) {
      const parsed = safeParse(IssueInputSchema, input, 'token request');
      if (!parsed.ok)
        throw new ToolsKitError('invalid_token_request', parsed.error.message, { cause: parsed.error });
      const ttl = parsed.value.ttlSeconds ?? defaultTtl;
      if (ttl > maxTtl)
        throw new ToolsKitError('invalid_token_request', `ttlSeconds ${ttl} exceeds maxTtlSeconds ${maxTtl}`);
      if (!signKey)
        throw new ToolsKitError('invalid_options', 'this issuer has no privateKey, so it can only verify');
      const now = Math.floor(Date.now() / 1000);
      return new SignJWT({
        thread: parsed.value.threadId,
        run: parsed.value.runId,
        tools: [...new Set(parsed.value.tools)],
      })
        .setProtectedHeader({ alg: algorithm, typ: 'JWT' })
        .setIssuer(issuer)
        .setAudience(ACT_AS_AUDIENCE)
        .setSubject(parsed.value.userId)
        .setIssuedAt(now)
        .setNotBefore(now)
        .setExpirationTime(now + ttl)
        .setJti(randomUUID())
        .sign(signKey);
    },

    async verify(token) {
      if (typeof token !== 'string' || token.length === 0)
        throw new ToolsKitError('token_invalid', 'no token given');
      if (token.length > LIMITS.maxTokenLength) throw new ToolsKitError('token_invalid', 'token is too long');
      let payload: unknown;
      try {
        ({ payload } = await jwtVerify(token, verifyKey, {
          algorithms: [algorithm],
          issuer,
          audience: ACT_AS_AUDIENCE,
          clockTolerance: tolerance,
          // Bounds `iat` from both sides: a token minted in the future, or older than any allowed lifetime, is refused.
          maxTokenAge: maxTtl,
          requiredClaims: ['iat', 'exp', 'sub', 'jti'],
        }));
      } catch (cause) {
        if (cause instanceof joseErrors.JWTExpired)
          throw new ToolsKitError('token_expired', 'token has expired; mint a new one', { cause });
        throw new ToolsKitError('token_invalid', describeJoseError(cause), { cause });
      }
      const claims = safeParse(ActAsClaimsSchema, payload, 'token claims');
      if (!claims.ok) throw new ToolsKitError('token_invalid', claims.error.message, { cause: claims.error });
      if (claims.value.exp - claims.value.iat > maxTtl) {
        throw new ToolsKitError('token_invalid', `token lifetime exceeds ${maxTtl} seconds`);
      }
      return claims.value;
    },
  };
}

function describeJoseError(error: unknown): string {
  if (error instanceof joseErrors.JWTClaimValidationFailed) {
    if (error.claim === 'nbf' || error.claim === 'iat') return 'token is not valid yet';
    return `token claim "${error.claim}" is not acceptable`;
  }
  if (error instanceof joseErrors.JOSEAlgNotAllowed) return 'token algorithm is not allowed';
  if (error instanceof joseErrors.JWSSignatureVerificationFailed) return 'token signature is invalid';
  return 'token is malformed';
}

function isKeyObject(key: unknown): key is KeyObject {
  return (
    typeof key === 'object' &&
    key !== null &&
    'asymmetricKeyType' in key &&
    typeof (key as KeyObject).export === 'function'
  );
}
