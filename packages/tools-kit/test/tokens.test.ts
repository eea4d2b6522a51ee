import { generateKeyPairSync } from 'node:crypto';
import { ACT_AS_AUDIENCE } from '@threadline/contracts';
import { SignJWT, UnsecuredJWT, decodeJwt, decodeProtectedHeader, generateKeyPair } from 'jose';
import { describe, expect, it } from 'vitest';
import { ToolsKitError, createTokenIssuer } from '../src/index.js';
import { ISSUER, SECRET } from './helpers.js';

const input = { userId: 'u1', threadId: 't1', runId: 'r1', tools: ['profile.patch', 'state.get'] };
const now = () => Math.floor(Date.now() / 1000);

async function expectCode(p: Promise<unknown>, code: string) {
  const error = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ToolsKitError);
  expect((error as ToolsKitError).code).toBe(code);
}

describe('createTokenIssuer', () => {
  it('mints HS256 tokens with the contract claims and a 5 minute default lifetime', async () => {
    const tokens = createTokenIssuer({ secret: SECRET, issuer: ISSUER });
    const token = await tokens.issue(input);
    expect(decodeProtectedHeader(token)).toMatchObject({ alg: 'HS256', typ: 'JWT' });
    const raw = decodeJwt(token);
    expect(raw).toMatchObject({
      iss: ISSUER,
      aud: ACT_AS_AUDIENCE,
      sub: 'u1',
      thread: 't1',
      run: 'r1',
      tools: input.tools,
    });
    expect((raw.exp ?? 0) - (raw.iat ?? 0)).toBe(300);
    expect(typeof raw.jti).toBe('string');
    const claims = await tokens.verify(token);
    expect(claims).toMatchObject({ sub: 'u1', thread: 't1', run: 'r1', tools: input.tools });
    const other = await tokens.issue(input);
    expect(decodeJwt(other).jti).not.toBe(raw.jti);
  });

  it('refuses an HS256 secret shorter than 32 bytes', () => {
    expect(() => createTokenIssuer({ secret: 'x'.repeat(31), issuer: ISSUER })).toThrow(/at least 32/);
    expect(() => createTokenIssuer({ secret: new Uint8Array(16), issuer: ISSUER })).toThrow(ToolsKitError);
    // 11 three-byte characters are 33 bytes: the limit is on bytes, not characters.
    expect(() => createTokenIssuer({ secret: '€'.repeat(11), issuer: ISSUER })).not.toThrow();
  });

  it('caps lifetimes: ttl above the maximum is refused, the maximum is capped at one hour', async () => {
    expect(() => createTokenIssuer({ secret: SECRET, issuer: ISSUER, maxTtlSeconds: 7200 })).toThrow(
      /maxTtlSeconds/,
    );
    expect(() =>
      createTokenIssuer({ secret: SECRET, issuer: ISSUER, ttlSeconds: 1000, maxTtlSeconds: 900 }),
    ).toThrow(/ttlSeconds/);
    const tokens = createTokenIssuer({ secret: SECRET, issuer: ISSUER, ttlSeconds: 60, maxTtlSeconds: 120 });
    const t = decodeJwt(await tokens.issue(input));
    expect((t.exp ?? 0) - (t.iat ?? 0)).toBe(60);
    await expectCode(tokens.issue({ ...input, ttlSeconds: 121 }), 'invalid_token_request');
  });

  it('refuses bad ids and tool names when minting', async () => {
    const tokens = createTokenIssuer({ secret: SECRET, issuer: ISSUER });
    await expectCode(tokens.issue({ ...input, threadId: 'has space' }), 'invalid_token_request');
    await expectCode(tokens.issue({ ...input, tools: ['9tool'] }), 'invalid_token_request');
    await expectCode(
      tokens.issue({ ...input, tools: Array.from({ length: 65 }, (_, i) => `t${i}`) }),
      'invalid_token_request',
    );
  });

  it('supports EdDSA and ES256 key pairs (KeyObject and CryptoKey) and a verify-only issuer', async () => {
    const ed = generateKeyPairSync('ed25519');
    const edIssuer = createTokenIssuer({ ...ed, algorithm: 'EdDSA', issuer: ISSUER });
    const edToken = await edIssuer.issue(input);
    expect(decodeProtectedHeader(edToken).alg).toBe('EdDSA');
    expect((await edIssuer.verify(edToken)).sub).toBe('u1');

    const es = await generateKeyPair('ES256');
    const esIssuer = createTokenIssuer({ ...es, algorithm: 'ES256', issuer: ISSUER });
    const esToken = await esIssuer.issue(input);
    expect((await esIssuer.verify(esToken)).thread).toBe('t1');

    const verifyOnly = createTokenIssuer({ publicKey: ed.publicKey, algorithm: 'EdDSA', issuer: ISSUER });
    expect((await verifyOnly.verify(edToken)).run).toBe('r1');
    await expectCode(verifyOnly.issue(input), 'invalid_options');
    // A token from the ES256 pair must not open the EdDSA verifier, and vice versa.
    await expectCode(verifyOnly.verify(esToken), 'token_invalid');
    await expectCode(esIssuer.verify(edToken), 'token_invalid');
    expect(() =>
      createTokenIssuer({
        privateKey: ed.publicKey,
        publicKey: ed.publicKey,
        algorithm: 'EdDSA',
        issuer: ISSUER,
      }),
    ).toThrow(/private/);
  });

  it('refuses alg none, algorithm swaps, wrong issuer/audience, expired and future tokens', async () => {
    const tokens = createTokenIssuer({ secret: SECRET, issuer: ISSUER });
    const key = new TextEncoder().encode(SECRET);
    const claims = { thread: 't1', run: 'r1', tools: ['state.get'] };
    const sign = (
      alg: string,
      over: { iss?: string; aud?: string; iat?: number; exp?: number; nbf?: number } = {},
    ) => {
      const t = now();
      const jwt = new SignJWT(claims)
        .setProtectedHeader({ alg })
        .setIssuer(over.iss ?? ISSUER)
        .setAudience(over.aud ?? ACT_AS_AUDIENCE)
        .setSubject('u1')
        .setJti('j1')
        .setIssuedAt(over.iat ?? t)
        .setExpirationTime(over.exp ?? t + 60);
      if (over.nbf !== undefined) jwt.setNotBefore(over.nbf);
      return jwt.sign(key);
    };
    expect((await tokens.verify(await sign('HS256'))).sub).toBe('u1');
    const none = new UnsecuredJWT({ ...claims, sub: 'u1', jti: 'j', iss: ISSUER, aud: ACT_AS_AUDIENCE })
      .setIssuedAt()
      .setExpirationTime('1m')
      .encode();
    await expectCode(tokens.verify(none), 'token_invalid');
    await expectCode(tokens.verify(await sign('HS512')), 'token_invalid');
    await expectCode(tokens.verify(await sign('HS256', { iss: 'someone-else' })), 'token_invalid');
    await expectCode(tokens.verify(await sign('HS256', { aud: 'threadline-agent' })), 'token_invalid');
    await expectCode(
      tokens.verify(await sign('HS256', { iat: now() - 600, exp: now() - 60 })),
      'token_expired',
    );
    await expectCode(
      tokens.verify(await sign('HS256', { iat: now() + 600, exp: now() + 660 })),
      'token_invalid',
    );
    await expectCode(tokens.verify(await sign('HS256', { nbf: now() + 600 })), 'token_invalid');
    await expectCode(tokens.verify(await sign('HS256', { exp: now() + 7200 })), 'token_invalid');
    // Within the clock tolerance, a token that just expired still passes.
    expect((await tokens.verify(await sign('HS256', { iat: now() - 60, exp: now() - 2 }))).sub).toBe('u1');
    await expectCode(tokens.verify('x'.repeat(9000)), 'token_invalid');
    await expectCode(tokens.verify(''), 'token_invalid');
  });
});
