import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

// The dual-package hazard: an app that loads a package's ESM build (import) and its CommonJS build (require,
// e.g. through a CJS dependency) gets two copies of every class, and errors must still pass `instanceof`
// across them. A plain Node process (no test-runner module loader) loads the real built files: run
// `npm run build` first (CI builds before testing).
const root = new URL('../../', import.meta.url);
const check = fileURLToPath(new URL('fixtures/dual-package-check.mjs', import.meta.url));

const cases: [pkg: string, base: string, code: string, sub?: [name: string, args: unknown[]]][] = [
  ['contracts', 'ContractError', 'invalid_payload'],
  ['tools-kit', 'ToolsKitError', 'invalid_options', ['ToolCallError', ['timeout', 'slow']]],
  ['relay', 'RelayError', 'closed', ['StoreError', ['conflict', 'taken']]],
  ['agent-runner', 'AgentRunnerError', 'invalid_config'],
];

describe('errors across the ESM and CommonJS builds in one process', () => {
  it.each(cases)('@threadline/%s: %s', (pkg, base, code, sub) => {
    const dir = fileURLToPath(new URL(`packages/${pkg}`, root));
    for (const file of ['index.js', 'index.cjs'])
      if (!existsSync(`${dir}/dist/${file}`))
        throw new Error(`${dir}/dist/${file} is missing: npm run build`);
    const args = [check, dir, base, code, ...(sub ? [sub[0], JSON.stringify(sub[1])] : [])];
    const result = JSON.parse(execFileSync(process.execPath, args, { encoding: 'utf8' })) as Record<
      string,
      boolean
    >;
    expect(result).toEqual({
      twoCopies: true,
      cjsIsEsm: true,
      esmIsCjs: true,
      cjsIsError: true,
      plainError: false,
      lookAlike: false,
      nullish: false,
      ...(sub
        ? { subCjsIsSubEsm: true, subCjsIsBaseEsm: true, baseCjsIsSubEsm: false, baseEsmIsSubEsm: false }
        : {}),
    });
  });
});
