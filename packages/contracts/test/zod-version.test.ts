import { z } from 'zod';
import { describe, expect, it } from 'vitest';
import contractsPackage from '../package.json' with { type: 'json' };

// `npm run test:zod-oldest` runs this folder with zod aliased to the oldest version of the peer range; this
// proves the alias took effect, so a green run there really was a run against that zod.
describe('zod under test', () => {
  const { major, minor, patch } = z.core.version;
  const loaded = `${major}.${minor}.${patch}`;

  it.runIf(process.env.THREADLINE_ZOD_VERSION)('is the version the script installed', () => {
    expect(loaded).toBe(process.env.THREADLINE_ZOD_VERSION);
  });

  it('is inside the peer range the package declares', () => {
    const oldest = /(\d+)\.(\d+)\.(\d+)/.exec(contractsPackage.peerDependencies.zod)!.slice(1).map(Number);
    expect(major).toBe(oldest[0]);
    expect(minor * 10_000 + patch).toBeGreaterThanOrEqual(oldest[1]! * 10_000 + oldest[2]!);
  });
});
