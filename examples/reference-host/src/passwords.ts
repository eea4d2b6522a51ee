import { hash, verify, type Options } from '@node-rs/argon2';
import { dictionary } from '@zxcvbn-ts/language-common';

/**
 * argon2id at OWASP's current minimum (19 MiB memory, 2 passes, 1 lane). `algorithm: 2` is Argon2id; the
 * package's enum is a `const enum`, which isolated-module builds cannot import.
 */
export const PASSWORD_HASH_OPTIONS: Options = {
  algorithm: 2,
  memoryCost: 19_456,
  timeCost: 2,
  parallelism: 1,
};

/** Hashes a password into an argon2id PHC string (salt included). */
export function hashPassword(password: string): Promise<string> {
  return hash(password, PASSWORD_HASH_OPTIONS);
}

let dummyHash: Promise<string> | undefined;

/**
 * Checks a password against a stored hash. With no stored hash (unknown user) it still does the same work
 * against a dummy hash, so response time does not tell whether a username exists.
 */
export async function verifyPassword(passwordHash: string | undefined, password: string): Promise<boolean> {
  // No account, or one with no password (made by Google sign-in): the same work as a wrong password.
  if (!passwordHash) {
    dummyHash ??= hashPassword('threadline-dummy-password');
    await verify(await dummyHash, password).catch(() => false);
    return false;
  }
  try {
    return await verify(passwordHash, password);
  } catch {
    return false;
  }
}

let common: Set<string> | undefined;

/**
 * Whether `password` (compared in lower case) is on the list of commonly used passwords that zxcvbn-ts
 * maintains (`@zxcvbn-ts/language-common`, about 49,000 from breach data; about 18,000 of them are long
 * enough to pass the 8-character minimum). Built on first use.
 */
export function isCommonPassword(password: string): boolean {
  common ??= new Set(dictionary['passwords-common'].filter((p) => p.length >= 8));
  return common.has(password.toLowerCase());
}
