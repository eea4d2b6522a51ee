import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import Provider, { type KoaContextWithOIDC } from 'oidc-provider';
import { chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import express from 'express';
import {
  loginCookieKey,
  oidcRoutes,
  openLogin,
  safeNext,
  sealLogin,
  usernameFromEmail,
} from '../src/oidc.js';
import { Sessions } from '../src/sessions.js';
import { SqliteUserStore } from '../src/users/sqlite-user-store.js';
import { ensureBuilt, REPO_ROOT, startUserHost, type UserHost } from './user-host.js';

// "Continue with Google" end to end: a real OpenID provider (oidc-provider) on 127.0.0.1, the real host process
// (`node dist/main.js`) configured with it, and a cookie-keeping client that acts as the browser, following
// every redirect between them. Attacks are made the way an attacker could make them: by changing what the
// browser carries.

const CHROMIUM = '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
const ARTIFACTS = join(REPO_ROOT, 'test-artifacts', 'reference-host');
const launchChromium = () =>
  chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox', '--disable-gpu'] });

const CLIENT_ID = 'threadline-host';
const CLIENT_SECRET = 'a-client-secret-for-the-test-provider';
const SHARED = 'a-shared-secret-of-at-least-32-characters';
// No agent process: sign-in needs none (the agent URL answers nothing).
const NO_AGENT = { AGENT_URL: 'http://127.0.0.1:9', AGENT_SHARED_SECRET: SHARED };

/** A browser profile: cookies per origin (paths ignored), redirects followed by hand. */
class Browser {
  readonly #cookies = new Map<string, Map<string, string>>();

  async get(url: string): Promise<{ status: number; location: string | null; text: string }> {
    const u = new URL(url);
    const jar = this.#cookies.get(u.origin);
    const cookie = jar ? [...jar].map(([k, v]) => `${k}=${v}`).join('; ') : '';
    const res = await fetch(url, { redirect: 'manual', headers: cookie ? { cookie } : {} });
    for (const c of res.headers.getSetCookie()) {
      const [pair = ''] = c.split(';');
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      const j = this.#cookies.get(u.origin) ?? new Map<string, string>();
      this.#cookies.set(u.origin, j);
      if (value === '' || /max-age=0|expires=thu, 01 jan 1970/i.test(c)) j.delete(name);
      else j.set(name, value);
    }
    const location = res.headers.get('location');
    return { status: res.status, location: location && new URL(location, url).href, text: await res.text() };
  }

  setCookie(origin: string, name: string, value: string): void {
    const j = this.#cookies.get(origin) ?? new Map<string, string>();
    this.#cookies.set(origin, j);
    j.set(name, value);
  }

  /** Forgets one site's cookies (e.g. the provider's, so the next sign-in there asks who you are again). */
  forget(origin: string): void {
    this.#cookies.delete(origin);
  }

  /** Follows redirects from `url` until one leads to `stopAt` (returned, not visited) or a page answers. */
  async follow(url: string, stopAt: string): Promise<string> {
    let at = url;
    for (let i = 0; i < 10; i++) {
      const r = await this.get(at);
      if (r.location === null) throw new Error(`${at} answered ${r.status} without a redirect: ${r.text}`);
      if (r.location.startsWith(stopAt)) return r.location;
      at = r.location;
    }
    throw new Error('too many redirects');
  }
}

interface Account {
  email: string;
  email_verified: boolean;
}

describe('Google sign-in (OpenID Connect) against a real provider', () => {
  const accounts = new Map<string, Account>();
  /** Who the provider's login step signs in as next. */
  let nextSubject = '';
  let providerServer: Server;
  let issuer: string;
  let host: UserHost;
  let callbackUrl: string;
  let usersDb: DatabaseSync;

  const count = () => ({
    users: (usersDb.prepare('SELECT count(*) AS n FROM users').get() as { n: number }).n,
    identities: (usersDb.prepare('SELECT count(*) AS n FROM identities').get() as { n: number }).n,
  });
  const me = async (browser: Browser) => {
    const r = await browser.get(`${host.url}/api/me`);
    return r.status === 200 ? (JSON.parse(r.text) as { user: { id: string; username: string } }).user : null;
  };

  /** Starts a sign-in in `browser` as `subject` and returns the callback URL the provider sends it to. */
  const signInAtProvider = async (browser: Browser, subject: string, next?: string) => {
    nextSubject = subject;
    browser.forget(issuer);
    const start = await browser.get(
      `${host.url}/auth/oidc/start${next === undefined ? '' : `?next=${encodeURIComponent(next)}`}`,
    );
    expect(start.status).toBe(303);
    expect(start.location).toMatch(new RegExp(`^${issuer}/auth\\?`));
    return { authUrl: start.location!, callback: await browser.follow(start.location!, callbackUrl) };
  };
  /** Delivers a callback URL in `browser`; returns where the host sends it. */
  const deliver = async (browser: Browser, url: string) => {
    const r = await browser.get(url);
    expect(r.status).toBe(303);
    return new URL(r.location!).pathname + new URL(r.location!).search;
  };

  beforeAll(async () => {
    ensureBuilt();
    // The provider's port (its issuer) must be known before the host starts, the host's (the redirect URI)
    // before the provider is made: listen first, attach the provider once both are known.
    let handler: (req: IncomingMessage, res: ServerResponse) => void = (_req, res) => {
      res.statusCode = 503;
      res.end();
    };
    providerServer = createServer((req, res) => handler(req, res));
    await new Promise<void>((resolve) => providerServer.listen(0, '127.0.0.1', resolve));
    issuer = `http://127.0.0.1:${(providerServer.address() as AddressInfo).port}`;
    host = await startUserHost({
      ...NO_AGENT,
      OIDC_ISSUER: issuer,
      OIDC_CLIENT_ID: CLIENT_ID,
      OIDC_CLIENT_SECRET: CLIENT_SECRET,
    });
    callbackUrl = `${host.url}/auth/oidc/callback`;
    const provider = new Provider(issuer, {
      clients: [
        {
          client_id: CLIENT_ID,
          client_secret: CLIENT_SECRET,
          redirect_uris: [callbackUrl],
          grant_types: ['authorization_code'],
          response_types: ['code'],
          token_endpoint_auth_method: 'client_secret_post',
        },
      ],
      claims: { openid: ['sub'], email: ['email', 'email_verified'] },
      findAccount: (_ctx: KoaContextWithOIDC, sub: string) => {
        const account = accounts.get(sub);
        return account ? { accountId: sub, claims: () => ({ sub, ...account }) } : undefined;
      },
      features: { devInteractions: { enabled: false } },
      interactions: { url: (_ctx: KoaContextWithOIDC, interaction) => `/interaction/${interaction.uid}` },
      // A first-party client: no consent screen, the grant covers what was asked.
      loadExistingGrant: async (ctx: KoaContextWithOIDC) => {
        const grantId =
          ctx.oidc.result?.consent?.grantId ?? ctx.oidc.session!.grantIdFor(ctx.oidc.client!.clientId);
        if (grantId) return ctx.oidc.provider.Grant.find(grantId);
        const grant = new ctx.oidc.provider.Grant({
          clientId: ctx.oidc.client!.clientId,
          accountId: ctx.oidc.session!.accountId!,
        });
        grant.addOIDCScope('openid email profile');
        await grant.save();
        return grant;
      },
      cookies: { keys: ['a-cookie-signing-key-for-the-test-provider'] },
    });
    const providerCallback = provider.callback();
    // The login step: whoever the test chose signs in, at once.
    handler = (req, res) => {
      if (!req.url?.startsWith('/interaction/')) return providerCallback(req, res);
      provider
        .interactionFinished(
          req,
          res,
          { login: { accountId: nextSubject } },
          { mergeWithLastSubmission: false },
        )
        .catch((error: unknown) => {
          res.statusCode = 500;
          res.end(String(error));
        });
    };
    usersDb = new DatabaseSync(join(host.dataDir, 'users.db'), { readOnly: true });
  }, 120_000);

  afterAll(async () => {
    // No request of these tests became an internal error (the host logs those as `[ref] GET /path:`).
    if (host) expect(host.output()).not.toMatch(/\] GET \/auth\/oidc/);
    usersDb?.close();
    await host?.stop();
    await new Promise<void>((resolve) =>
      providerServer ? providerServer.close(() => resolve()) : resolve(),
    );
  });

  it('the sign-in page offers Google; a first sign-in creates the user, signs in and goes to `next`', async () => {
    const methods = await new Browser().get(`${host.url}/api/auth/methods`);
    expect(JSON.parse(methods.text)).toEqual({ password: true, google: true });
    accounts.set('sub-ada', { email: 'Ada@Example.com', email_verified: true });
    const browser = new Browser();
    const { authUrl, callback } = await signInAtProvider(browser, 'sub-ada', '/threads/thr_x?y=1');
    // The authorization request carries PKCE (S256), state and nonce.
    const params = new URL(authUrl).searchParams;
    expect(params.get('code_challenge_method')).toBe('S256');
    expect(params.get('code_challenge')).toMatch(/^[\w-]{43}$/);
    expect(params.get('state')).toBeTruthy();
    expect(params.get('nonce')).toBeTruthy();
    expect(await deliver(browser, callback)).toBe('/threads/thr_x?y=1');
    const user = await me(browser);
    expect(user?.username).toBe('ada');
    expect(count()).toEqual({ users: 1, identities: 1 });
    const identity = usersDb.prepare('SELECT * FROM identities').get() as Record<string, unknown>;
    expect(identity).toMatchObject({
      issuer,
      subject: 'sub-ada',
      user_id: user!.id,
      email: 'ada@example.com',
    });
  });

  it('signing in again with the same subject signs in the same user; `next` never leaves the site', async () => {
    const first = await usersDb.prepare('SELECT user_id FROM identities WHERE subject = ?').get('sub-ada');
    const browser = new Browser();
    const { callback } = await signInAtProvider(browser, 'sub-ada', '//evil.example/x');
    expect(await deliver(browser, callback)).toBe('/threads');
    expect((await me(browser))?.id).toBe((first as { user_id: string }).user_id);
    expect(count()).toEqual({ users: 1, identities: 1 });
  });

  it('another subject with the same verified email is linked to the existing account', async () => {
    accounts.set('sub-ada-2', { email: 'ada@example.com', email_verified: true });
    const browser = new Browser();
    const { callback } = await signInAtProvider(browser, 'sub-ada-2');
    expect(await deliver(browser, callback)).toBe('/threads');
    expect((await me(browser))?.username).toBe('ada');
    expect(count()).toEqual({ users: 1, identities: 2 });
  });

  it('a signed-in password account gets Google added, and Google then signs in to it', async () => {
    const browser = new Browser();
    // Sign up with a password through the API, carrying the session cookie into the browser's jar.
    const signup = await fetch(`${host.url}/api/auth/signup`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', origin: host.url },
      body: JSON.stringify({ username: 'bob', password: 'correct horse battery' }),
    });
    expect(signup.status).toBe(201);
    const [name, value] = signup.headers.getSetCookie()[0]!.split(';')[0]!.split('=') as [string, string];
    browser.setCookie(host.url, name, value);
    accounts.set('sub-bob', { email: 'bob@example.com', email_verified: true });
    const before = await me(browser);
    expect(before?.username).toBe('bob');
    expect(count()).toEqual({ users: 2, identities: 2 });
    const { callback } = await signInAtProvider(browser, 'sub-bob');
    expect(await deliver(browser, callback)).toBe('/threads');
    expect((await me(browser))?.id).toBe(before!.id);
    expect(count()).toEqual({ users: 2, identities: 3 });
    // Later, in a browser signed in to nothing, Google signs in to bob.
    const later = new Browser();
    const again = await signInAtProvider(later, 'sub-bob');
    expect(await deliver(later, again.callback)).toBe('/threads');
    expect((await me(later))?.id).toBe(before!.id);
    expect(count()).toEqual({ users: 2, identities: 3 });
  });

  it('an unverified email matching an account is refused (email_not_verified): nothing created or linked', async () => {
    accounts.set('sub-mallory', { email: 'ada@example.com', email_verified: false });
    const before = count();
    const browser = new Browser();
    const { callback } = await signInAtProvider(browser, 'sub-mallory');
    expect(await deliver(browser, callback)).toBe('/?oidc_error=email_not_verified');
    expect(await me(browser)).toBeNull();
    expect(count()).toEqual(before);
  });

  it('a forged state is refused (oidc_state_mismatch), as is a callback this browser never started', async () => {
    accounts.set('sub-cy', { email: 'cy@example.com', email_verified: true });
    const before = count();
    const browser = new Browser();
    const { callback } = await signInAtProvider(browser, 'sub-cy');
    const forged = new URL(callback);
    forged.searchParams.set('state', 'forged-state-value-forged-state-value-1234');
    expect(await deliver(browser, forged.href)).toBe('/?oidc_error=oidc_state_mismatch');
    // The real callback delivered to another browser (a login CSRF) is refused too.
    const other = new Browser();
    expect(await deliver(other, callback)).toBe('/?oidc_error=oidc_state_mismatch');
    expect(await me(browser)).toBeNull();
    expect(await me(other)).toBeNull();
    expect(count()).toEqual(before);
  });

  it('a replayed code is refused: in the same browser (oidc_state_mismatch) and inside a new sign-in (oidc_failed)', async () => {
    accounts.set('sub-dee', { email: 'dee@example.com', email_verified: true });
    const browser = new Browser();
    const { callback } = await signInAtProvider(browser, 'sub-dee');
    expect(await deliver(browser, callback)).toBe('/threads');
    const after = count();
    expect(after.users).toBeGreaterThan(0);
    // The same callback again: the sign-in it belonged to is finished.
    const attacker = new Browser();
    expect(await deliver(attacker, callback)).toBe('/?oidc_error=oidc_state_mismatch');
    // The used code inside a sign-in the attacker started (its state and cookie): the provider refuses it.
    const start = await attacker.get(`${host.url}/auth/oidc/start`);
    const replay = new URL(callback);
    replay.searchParams.set('state', new URL(start.location!).searchParams.get('state')!);
    expect(await deliver(attacker, replay.href)).toBe('/?oidc_error=oidc_failed');
    expect(await me(attacker)).toBeNull();
    expect(count()).toEqual(after);
  });

  it('an ID token with another nonce than the sign-in sent is refused (oidc_nonce_mismatch)', async () => {
    accounts.set('sub-eve', { email: 'eve@example.com', email_verified: true });
    const before = count();
    const browser = new Browser();
    nextSubject = 'sub-eve';
    const start = await browser.get(`${host.url}/auth/oidc/start`);
    // The browser changes the nonce on its way to the provider: state and PKCE still match, the nonce does not.
    const tampered = new URL(start.location!);
    tampered.searchParams.set('nonce', 'a-nonce-this-sign-in-never-sent-0123456789');
    const callback = await browser.follow(tampered.href, callbackUrl);
    expect(await deliver(browser, callback)).toBe('/?oidc_error=oidc_nonce_mismatch');
    expect(await me(browser)).toBeNull();
    expect(count()).toEqual(before);
  });

  it('junk callbacks are refused with a code, never a 500, and store nothing', async () => {
    const before = count();
    const browser = new Browser();
    await browser.get(`${host.url}/auth/oidc/start`);
    for (const query of [
      '',
      '?code=x',
      '?state=a&state=b&code=c',
      '?state[x]=1',
      `?state=${'x'.repeat(5000)}`,
    ]) {
      expect(await deliver(browser, `${callbackUrl}${query}`), query).toBe(
        '/?oidc_error=oidc_state_mismatch',
      );
    }
    // A pending-sign-in cookie that was tampered with opens nothing.
    const tampered = new Browser();
    tampered.setCookie(host.url, 'tl_oidc', 'eyJhbGciOiJkaXIiLCJlbmMiOiJBMjU2R0NNIn0..AAAA.BBBB.CCCC');
    expect(await deliver(tampered, `${callbackUrl}?code=x&state=y`)).toBe('/?oidc_error=oidc_state_mismatch');
    expect(count()).toEqual(before);
  });

  it('a user who says no at the provider comes back with oidc_denied', async () => {
    const before = count();
    const browser = new Browser();
    const { callback } = await signInAtProvider(browser, 'sub-ada');
    const denied = new URL(callback);
    denied.searchParams.delete('code');
    denied.searchParams.set('error', 'access_denied');
    expect(await deliver(browser, denied.href)).toBe('/?oidc_error=oidc_denied');
    expect(count()).toEqual(before);
  });

  it.skipIf(!haveChromium)(
    'in Chromium: the sign-in page shows the button, which signs in; a failure is said in words',
    async () => {
      accounts.set('sub-fay', { email: 'fay@example.com', email_verified: true });
      nextSubject = 'sub-fay';
      mkdirSync(ARTIFACTS, { recursive: true });
      const chromiumBrowser = await launchChromium();
      try {
        const page = await chromiumBrowser.newPage({ viewport: { width: 1100, height: 800 } });
        await page.goto(`${host.url}/?next=${encodeURIComponent('/threads?from=google')}`);
        const button = page.getByRole('link', { name: 'Continue with Google' });
        await button.waitFor({ state: 'visible' });
        await page.screenshot({ path: join(ARTIFACTS, 'oidc-sign-in-page.png') });
        await button.click();
        await page.waitForURL(`${host.url}/threads?from=google`);
        expect((await page.evaluate(() => fetch('/api/me').then((r) => r.json()))).user.username).toBe('fay');
        // A browser signed in to nothing, sent back after a refused sign-in.
        const fresh = await chromiumBrowser.newPage({ viewport: { width: 1100, height: 800 } });
        await fresh.goto(`${host.url}/?oidc_error=email_not_verified`);
        await expect
          .poll(() => fresh.locator('#auth-error').textContent())
          .toMatch(/Google has not verified the email address/);
        await fresh.screenshot({ path: join(ARTIFACTS, 'oidc-email-not-verified.png') });
      } finally {
        await chromiumBrowser.close();
      }
    },
  );
});

describe('Google sign-in off, or its provider down', () => {
  let off: UserHost;
  let down: UserHost;
  beforeAll(async () => {
    ensureBuilt();
    [off, down] = await Promise.all([
      startUserHost(NO_AGENT),
      // Nothing listens on port 9: the provider is down.
      startUserHost({
        ...NO_AGENT,
        OIDC_ISSUER: 'http://127.0.0.1:9',
        OIDC_CLIENT_ID: CLIENT_ID,
        OIDC_CLIENT_SECRET: CLIENT_SECRET,
      }),
    ]);
  }, 120_000);
  afterAll(async () => {
    await Promise.all([off?.stop(), down?.stop()]);
  });

  it('not configured: the routes answer 404 and the sign-in page offers no Google button', async () => {
    for (const path of ['/auth/oidc/start', '/auth/oidc/callback?code=x&state=y']) {
      expect((await fetch(off.url + path, { redirect: 'manual' })).status).toBe(404);
    }
    expect(await (await fetch(`${off.url}/api/auth/methods`)).json()).toEqual({
      password: true,
      google: false,
    });
  });

  it.skipIf(!haveChromium)(
    'not configured, in Chromium: the sign-in page shows no Google button',
    async () => {
      const chromiumBrowser = await launchChromium();
      try {
        const page = await chromiumBrowser.newPage();
        await page.goto(off.url);
        await page.locator('#login').waitFor({ state: 'visible' });
        // auth.js has asked /api/auth/methods once the page is idle.
        await page.waitForLoadState('networkidle');
        expect(await page.locator('#google-signin').isHidden()).toBe(true);
      } finally {
        await chromiumBrowser.close();
      }
    },
  );

  it('a provider that is down gives oidc_unavailable at once, not a hang or a 500', async () => {
    const r = await fetch(`${down.url}/auth/oidc/start`, { redirect: 'manual' });
    expect(r.status).toBe(303);
    expect(r.headers.get('location')).toBe('/?oidc_error=oidc_unavailable');
    expect(down.output()).toMatch(/OpenID Connect sign-in start failed \(oidc_unavailable\)/);
  });

  it('one client address may start 60 sign-ins per 5 minutes; the next gets rate_limited', async () => {
    // The test before started one already.
    for (let i = 0; i < 59; i++) {
      const r = await fetch(`${down.url}/auth/oidc/start`, { redirect: 'manual' });
      expect(r.headers.get('location')).toBe('/?oidc_error=oidc_unavailable');
    }
    const r = await fetch(`${down.url}/auth/oidc/start`, { redirect: 'manual' });
    expect(r.status).toBe(303);
    expect(r.headers.get('location')).toBe('/?oidc_error=rate_limited');
  });
});

describe('OpenID Connect helpers', () => {
  it('a provider that accepts and never answers is given up on after the provider timeout', async () => {
    // Accepts connections and never answers a byte.
    const silent = createServer(() => {});
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const users = new SqliteUserStore(':memory:');
    const app = express();
    const warnings: unknown[] = [];
    app.use(
      '/auth/oidc',
      oidcRoutes({
        settings: {
          issuer: `http://127.0.0.1:${(silent.address() as AddressInfo).port}`,
          clientId: CLIENT_ID,
          clientSecret: CLIENT_SECRET,
          redirectUrl: 'http://localhost:1/auth/oidc/callback',
        },
        users,
        sessions: new Sessions(users, { ttlMs: 60_000, secure: false }),
        secureCookies: false,
        secret: SHARED,
        limits: { providerTimeoutSeconds: 1 },
        logger: { warn: (...args: unknown[]) => warnings.push(args) },
      }),
    );
    const server = app.listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    try {
      const r = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/auth/oidc/start`, {
        redirect: 'manual',
        signal: AbortSignal.timeout(20_000),
      });
      expect(r.status).toBe(303);
      expect(r.headers.get('location')).toBe('/?oidc_error=oidc_unavailable');
      expect(warnings).toHaveLength(1);
    } finally {
      server.closeAllConnections();
      server.close();
      silent.closeAllConnections();
      silent.close();
      await users.close();
    }
  });

  it('a sealed sign-in opens only unaltered, with its key, and before it expires', async () => {
    const key = loginCookieKey('a-shared-secret-of-at-least-32-characters');
    const login = { state: 's', nonce: 'n', codeVerifier: 'v', next: '/threads' };
    const sealed = await sealLogin(key, login, 600_000, 1_000_000);
    // Encrypted: the PKCE verifier cannot be read from the cookie.
    expect(sealed).not.toContain('codeVerifier');
    expect(await openLogin(key, sealed, 1_000_000)).toEqual(login);
    expect(await openLogin(key, sealed, 1_000_000 + 599_000)).toEqual(login);
    expect(await openLogin(key, sealed, 1_000_000 + 601_000)).toBeNull();
    const other = loginCookieKey('another-secret-of-at-least-32-characters');
    expect(await openLogin(other, sealed, 1_000_000)).toBeNull();
    const parts = sealed.split('.');
    parts[3] = parts[3]!.slice(0, -2) + (parts[3]!.endsWith('AA') ? 'BB' : 'AA');
    expect(await openLogin(key, parts.join('.'), 1_000_000)).toBeNull();
    expect(await openLogin(key, undefined)).toBeNull();
    expect(await openLogin(key, 'x'.repeat(5000))).toBeNull();
  });

  it('safeNext keeps same-site paths only; usernameFromEmail makes a valid username', () => {
    expect(safeNext('/threads/thr_1?x=1#m')).toBe('/threads/thr_1?x=1#m');
    for (const bad of [
      '//evil.example',
      '/\\evil.example',
      'https://evil.example',
      'x',
      '/a\nb',
      undefined,
    ]) {
      expect(safeNext(bad)).toBe('/threads');
    }
    expect(usernameFromEmail('Ada.Lovelace+x@example.com')).toBe('ada.lovelacex');
    expect(usernameFromEmail('.@x')).toBe('user');
    expect(usernameFromEmail('_a@x')).toBe('usera');
  });
});
