import { hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import express, { type Request, type RequestHandler, type Response } from 'express';
import { EncryptJWT, jwtDecrypt } from 'jose';
import * as oidc from 'openid-client';
import { isStoreUnavailable } from './errors.js';
import { RateLimiter } from './rate-limit.js';
import { readCookie, type Sessions } from './sessions.js';
import type { UserRecord, UserStore } from './users/user-store.js';

/** Google's OpenID Connect issuer, the default of OIDC_ISSUER. */
export const GOOGLE_ISSUER = 'https://accounts.google.com';

/** Settings of "Continue with Google" (any OpenID Connect provider). */
export interface OidcSettings {
  issuer: string;
  clientId: string;
  clientSecret: string;
  /** Where the provider sends the browser back: this host's /auth/oidc/callback, registered at the provider. */
  redirectUrl: string;
}

/** Bounds of the OpenID Connect sign-in, with their defaults. */
export interface OidcLimits {
  /** How long a started sign-in may take at the provider, in ms. Default 10 minutes. */
  pendingLoginTtlMs: number;
  /** Sign-ins one client address may start per window. Default 60 per 5 minutes. */
  startsPerAddress: number;
  startsWindowMs: number;
  /** Longest wait for the provider (discovery, token and userinfo calls), in seconds. Default 10. */
  providerTimeoutSeconds: number;
}

export const DEFAULT_OIDC_LIMITS: OidcLimits = {
  pendingLoginTtlMs: 10 * 60_000,
  startsPerAddress: 60,
  startsWindowMs: 5 * 60_000,
  providerTimeoutSeconds: 10,
};

/** The codes a failed sign-in is sent back to the sign-in page with, as `/?oidc_error=<code>`. */
export type OidcErrorCode =
  | 'oidc_state_mismatch'
  | 'oidc_nonce_mismatch'
  | 'oidc_denied'
  | 'oidc_unavailable'
  | 'oidc_failed'
  | 'email_not_verified'
  | 'rate_limited'
  | 'store_unavailable';

class OidcFailure extends Error {
  constructor(
    readonly code: OidcErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** What a started sign-in must find again at the callback. */
export interface PendingLogin {
  state: string;
  nonce: string;
  codeVerifier: string;
  next: string;
}

/**
 * Seals a started sign-in into the value of an httpOnly cookie: encrypted and authenticated (JWE, A256GCM,
 * with `jose`), so the browser can neither read the PKCE verifier nor change anything, and expiring after
 * `ttlMs`. Any instance sharing the key can finish the sign-in, so no server-side state is needed (and none
 * grows with sign-ins started and never finished).
 */
export async function sealLogin(key: Uint8Array, login: PendingLogin, ttlMs: number, now = Date.now()) {
  const iat = Math.floor(now / 1000);
  return new EncryptJWT({ ...login })
    .setProtectedHeader({ alg: 'dir', enc: 'A256GCM' })
    .setIssuedAt(iat)
    .setExpirationTime(iat + Math.ceil(ttlMs / 1000))
    .encrypt(key);
}

/** The sign-in a cookie value seals, or null when it is missing, altered, sealed with another key or expired. */
export async function openLogin(
  key: Uint8Array,
  sealed: string | undefined,
  now = Date.now(),
): Promise<PendingLogin | null> {
  if (sealed === undefined || sealed.length > 4096) return null;
  try {
    const { payload } = await jwtDecrypt(sealed, key, {
      currentDate: new Date(now),
      requiredClaims: ['exp'],
      keyManagementAlgorithms: ['dir'],
      contentEncryptionAlgorithms: ['A256GCM'],
    });
    const { state, nonce, codeVerifier, next } = payload as Record<string, unknown>;
    if (
      typeof state !== 'string' ||
      typeof nonce !== 'string' ||
      typeof codeVerifier !== 'string' ||
      typeof next !== 'string'
    ) {
      return null;
    }
    return { state, nonce, codeVerifier, next };
  } catch {
    return null;
  }
}

/** The cookie-sealing key, derived from a host secret (HKDF-SHA256, its own label: no other use shares it). */
export const loginCookieKey = (secret: string): Uint8Array =>
  new Uint8Array(hkdfSync('sha256', secret, '', 'threadline reference host: oidc pending sign-in', 32));

/** True for an http:// issuer on this machine (a test or development provider), the only http one allowed. */
export function isLoopbackHttp(issuer: string): boolean {
  const u = new URL(issuer);
  return u.protocol === 'http:' && ['127.0.0.1', 'localhost', '[::1]'].includes(u.hostname.toLowerCase());
}

/** True when `s` has a control character (C0 or DEL). */
const hasControl = (s: string) => {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return true;
  }
  return false;
};

/** A same-origin path to go to after signing in, or /threads: never another origin (no open redirect). */
export function safeNext(next: unknown): string {
  if (typeof next !== 'string' || next.length > 512 || !next.startsWith('/')) return '/threads';
  if (next.startsWith('//') || next.startsWith('/\\') || next.includes('\\') || hasControl(next))
    return '/threads';
  try {
    const u = new URL(next, 'http://host.invalid');
    if (u.origin !== 'http://host.invalid') return '/threads';
    return u.pathname + u.search + u.hash;
  } catch {
    return '/threads';
  }
}

const USERNAME_MAX = 32;

/** A username made from the local part of an email: letters, digits, _ . - ; at least 3 characters. */
export function usernameFromEmail(email: string): string {
  const local = email.split('@')[0] ?? '';
  let base = local
    .toLowerCase()
    .replace(/[^a-z0-9_.-]/g, '')
    .replace(/^[^a-z0-9]+/, '')
    .slice(0, USERNAME_MAX - 6);
  if (base.length < 3) base = `user${base}`;
  return base;
}

const safeEqual = (a: string, b: string) => {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
};

/** Sorts an error from openid-client (or the network) into a sign-in error code. */
function classify(error: unknown): OidcFailure {
  if (error instanceof OidcFailure) return error;
  if (error instanceof oidc.AuthorizationResponseError) {
    return new OidcFailure('oidc_denied', `The provider did not sign you in (${error.error}).`, {
      cause: error,
    });
  }
  const code = (error as { code?: unknown } | null)?.code;
  const claim = (error as { cause?: { cause?: { claim?: unknown } } } | null)?.cause?.cause?.claim;
  if (code === 'OAUTH_JWT_CLAIM_COMPARISON_FAILED' && claim === 'nonce') {
    return new OidcFailure('oidc_nonce_mismatch', 'The sign-in answer was not for this sign-in.', {
      cause: error,
    });
  }
  if (
    code === 'OAUTH_TIMEOUT' ||
    code === 'OAUTH_ABORT' ||
    (error instanceof TypeError && /fetch failed/i.test(error.message))
  ) {
    return new OidcFailure('oidc_unavailable', 'The sign-in provider cannot be reached.', { cause: error });
  }
  if (isStoreUnavailable(error)) {
    return new OidcFailure('store_unavailable', 'The database cannot take this right now.', { cause: error });
  }
  return new OidcFailure('oidc_failed', 'The sign-in could not be completed.', { cause: error });
}

/** What {@link oidcRoutes} is built from. */
export interface OidcRoutesOptions {
  settings: OidcSettings;
  users: UserStore;
  sessions: Sessions;
  /** Whether cookies are Secure (HTTPS); the pending sign-in cookie follows the session cookie. */
  secureCookies: boolean;
  /** A secret every instance shares (the host's TOOLS_TOKEN_SECRET); the pending sign-in cookie's key comes from it. */
  secret: string;
  limits?: Partial<OidcLimits>;
  /** The client address per-address limits count by (the app's `req.ip`). */
  clientAddress?: (req: Request) => string;
  logger?: Pick<Console, 'warn'>;
}

/**
 * Routes of "Continue with Google" (OpenID Connect authorization code flow with PKCE, state and nonce, all
 * checked by openid-client), mounted at /auth/oidc:
 * - `GET /start?next=/path`: remembers a new sign-in for this browser and redirects to the provider.
 * - `GET /callback`: finishes it, finds or creates the user, starts the session and redirects to `next`.
 * A failure never answers 500: it redirects to `/?oidc_error=<code>` and stores nothing.
 *
 * @example
 * app.use('/auth/oidc', oidcRoutes({ settings, users, sessions, secureCookies: false, secret }));
 */
export function oidcRoutes(options: OidcRoutesOptions): RequestHandler {
  const { settings, users, sessions } = options;
  const limits = { ...DEFAULT_OIDC_LIMITS, ...options.limits };
  const logger = options.logger ?? console;
  const key = loginCookieKey(options.secret);
  const starts = new RateLimiter({ limit: limits.startsPerAddress, windowMs: limits.startsWindowMs });
  const cookieName = options.secureCookies ? '__Host-tl_oidc' : 'tl_oidc';
  const cookieOptions = {
    httpOnly: true,
    // Lax: the cookie comes back on the provider's top-level redirect to the callback, not on cross-site posts.
    sameSite: 'lax' as const,
    secure: options.secureCookies,
    path: '/',
  };
  const clientAddress = options.clientAddress ?? ((req: Request) => req.ip ?? '');
  const issuer = new URL(settings.issuer);

  // Discovery runs on the first sign-in (the host starts even with the provider down), at most one at a time,
  // bounded by the provider timeout; a failure is retried by the next sign-in.
  let discovered: Promise<oidc.Configuration> | undefined;
  const configuration = () =>
    (discovered ??= oidc
      .discovery(
        issuer,
        settings.clientId,
        { client_secret: settings.clientSecret, redirect_uris: [settings.redirectUrl] },
        oidc.ClientSecretPost(settings.clientSecret),
        {
          timeout: limits.providerTimeoutSeconds,
          // Plain HTTP only for a provider on this machine (tests, development); config.ts refuses any other.
          execute: isLoopbackHttp(settings.issuer) ? [oidc.allowInsecureRequests] : [],
        },
      )
      .catch((error: unknown) => {
        discovered = undefined;
        throw error;
      }));

  const fail = (res: Response, failure: OidcFailure) => {
    res.clearCookie(cookieName, cookieOptions);
    res.redirect(303, `/?oidc_error=${failure.code}`);
  };

  const router = express.Router();
  router.use((_req, res, next) => {
    res.setHeader('Cache-Control', 'no-store');
    next();
  });

  router.get('/start', (req, res, next) => {
    (async () => {
      try {
        const address = clientAddress(req);
        if (!starts.hit(address)) {
          throw new OidcFailure('rate_limited', 'Too many sign-ins started from this address.');
        }
        const config = await configuration();
        const state = oidc.randomState();
        const nonce = oidc.randomNonce();
        const codeVerifier = oidc.randomPKCECodeVerifier();
        const next = safeNext(req.query.next);
        const sealed = await sealLogin(key, { state, nonce, codeVerifier, next }, limits.pendingLoginTtlMs);
        const url = oidc.buildAuthorizationUrl(config, {
          redirect_uri: settings.redirectUrl,
          scope: 'openid email profile',
          state,
          nonce,
          code_challenge: await oidc.calculatePKCECodeChallenge(codeVerifier),
          code_challenge_method: 'S256',
        });
        res.cookie(cookieName, sealed, { ...cookieOptions, maxAge: limits.pendingLoginTtlMs });
        res.redirect(303, url.href);
      } catch (error) {
        const failure = classify(error);
        if (failure.code === 'oidc_unavailable' || failure.code === 'oidc_failed') {
          logger.warn(`OpenID Connect sign-in start failed (${failure.code}):`, error);
        }
        fail(res, failure);
      }
    })().catch(next);
  });

  router.get('/callback', (req, res, next) => {
    (async () => {
      try {
        // The cookie is cleared whatever happens next (fail() and the success path both clear it), so this
        // browser cannot finish the same sign-in twice; the provider accepts each code once anyway.
        const login = await openLogin(key, readCookie(req.headers.cookie, cookieName));
        const state = typeof req.query.state === 'string' ? req.query.state : '';
        if (!login || !safeEqual(state, login.state)) {
          throw new OidcFailure(
            'oidc_state_mismatch',
            'This sign-in was not started in this browser, was used already, or took too long.',
          );
        }
        const config = await configuration();
        const current = new URL(settings.redirectUrl);
        current.search = new URL(req.originalUrl, 'http://host.invalid').search;
        const tokens = await oidc.authorizationCodeGrant(config, current, {
          expectedState: login.state,
          expectedNonce: login.nonce,
          pkceCodeVerifier: login.codeVerifier,
          idTokenExpected: true,
        });
        const claims = tokens.claims();
        if (!claims) throw new OidcFailure('oidc_failed', 'The provider sent no ID token.');
        let email: unknown = claims.email;
        let verified: unknown = claims.email_verified;
        if (email === undefined) {
          // Providers that put scope claims only in userinfo (checked to be about the same subject).
          const info = await oidc.fetchUserInfo(config, tokens.access_token, claims.sub);
          email = info.email;
          verified = info.email_verified;
        }
        const user = await findOrCreateUser(req, {
          issuer: claims.iss,
          subject: claims.sub,
          email: typeof email === 'string' && email.length <= 320 ? email.toLowerCase() : null,
          emailVerified: verified === true,
        });
        await sessions.start(req, res, user.id);
        res.clearCookie(cookieName, cookieOptions);
        res.redirect(303, login.next);
      } catch (error) {
        const failure = classify(error);
        if (!['oidc_state_mismatch', 'email_not_verified', 'oidc_denied'].includes(failure.code)) {
          logger.warn(`OpenID Connect sign-in failed (${failure.code}):`, error);
        }
        fail(res, failure);
      }
    })().catch(next);
  });

  /**
   * The user of a signed-in identity. Linking to an existing account happens only by the stored (issuer,
   * subject), by the account signed in in this browser, or by an email the provider says is verified; an
   * unverified email never links nor creates anything.
   */
  async function findOrCreateUser(
    req: Request,
    who: { issuer: string; subject: string; email: string | null; emailVerified: boolean },
  ): Promise<UserRecord> {
    if (who.subject.length === 0 || who.subject.length > 255 || hasControl(who.subject)) {
      throw new OidcFailure('oidc_failed', 'The provider sent an unusable subject.');
    }
    for (let attempt = 0; attempt < 3; attempt++) {
      const known = await users.findUserByIdentity(who.issuer, who.subject);
      if (known) return known;
      if (who.email === null || !who.emailVerified) {
        throw new OidcFailure('email_not_verified', 'The provider has not verified this email address.');
      }
      const identity = (userId: string) => ({
        issuer: who.issuer,
        subject: who.subject,
        userId,
        email: who.email,
        createdAt: Date.now(),
      });
      try {
        // Signed in already (e.g. with a password): this browser's account gets the sign-in added.
        const current =
          (await sessions.userOf(req.headers.cookie)) ?? (await users.findUserByVerifiedEmail(who.email));
        if (current) {
          await users.addIdentity(identity(current.id));
          return current;
        }
        const base = usernameFromEmail(who.email);
        for (let n = 0; n < 5; n++) {
          const username = n === 0 ? base : `${base}-${randomBytes(3).toString('hex').slice(0, 5)}`;
          const userId = `usr_${randomBytes(12).toString('base64url')}`;
          try {
            return await users.createUserWithIdentity(
              { id: userId, username, passwordHash: '', createdAt: Date.now() },
              identity(userId),
            );
          } catch (error) {
            if ((error as { code?: unknown }).code !== 'username_taken') throw error;
          }
        }
        throw new OidcFailure('oidc_failed', 'No free username could be made for this account.');
      } catch (error) {
        // Another sign-in of the same identity linked it first: the next round finds it.
        if ((error as { code?: unknown }).code !== 'identity_taken') throw error;
      }
    }
    throw new OidcFailure('oidc_failed', 'The sign-in could not be linked to an account.');
  }

  return router;
}
