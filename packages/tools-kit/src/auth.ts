import { ActAsClaimsSchema, safeParse } from '@threadline/contracts';
import type { ActAsClaims } from '@threadline/contracts';
import { ToolsKitError } from './errors.js';
import { Reject } from './responses.js';
import type { TokenIssuer } from './tokens.js';

/** What the router's token check needs (see `ToolRouterOptions`). */
export interface AuthenticatorOptions {
  tokens: Pick<TokenIssuer, 'verify'>;
  isRunActive:
    ((run: { runId: string; threadId: string; userId: string }) => boolean | Promise<boolean>) | undefined;
  logger: Pick<Console, 'warn'>;
}

/**
 * The router's first step on every route: the act-as token from `Authorization: Bearer`, verified, its claims
 * checked against the contract and, with `isRunActive`, its run still running. Answers the claims or why not.
 */
export function createAuthenticator({
  tokens,
  isRunActive,
  logger,
}: AuthenticatorOptions): (request: Request) => Promise<ActAsClaims | Reject> {
  return async (request) => {
    const header = request.headers.get('authorization');
    if (header === null || header.trim() === '')
      return new Reject('token_missing', 'send Authorization: Bearer <act-as token>');
    const match = /^Bearer +([A-Za-z0-9._~+/=-]+)$/i.exec(header.trim());
    if (!match?.[1])
      return new Reject('token_invalid', 'the Authorization header must be "Bearer <act-as token>"');
    let claims: unknown;
    try {
      claims = await tokens.verify(match[1]);
    } catch (error) {
      if (error instanceof ToolsKitError && error.code === 'token_expired')
        return new Reject('token_expired', error.message);
      if (error instanceof ToolsKitError && error.code === 'token_invalid')
        return new Reject('token_invalid', error.message);
      logger.warn('[tools-kit] token verification failed with an unexpected error', error);
      return new Reject('token_invalid', 'token could not be verified');
    }
    // A custom verifier may hand back anything; scope decisions below rely on these shapes.
    const parsed = safeParse(ActAsClaimsSchema, claims, 'token claims');
    if (!parsed.ok) return new Reject('token_invalid', 'token claims are malformed');
    if (isRunActive) {
      const run = { runId: parsed.value.run, threadId: parsed.value.thread, userId: parsed.value.sub };
      let active: boolean;
      try {
        active = (await isRunActive(run)) === true;
      } catch (error) {
        logger.warn('[tools-kit] isRunActive failed; refusing the call', error);
        return new Reject('unavailable', 'could not check that the run is still running; try again');
      }
      if (!active) return new Reject('run_not_active', 'this token’s run is no longer running');
    }
    return parsed.value;
  };
}
