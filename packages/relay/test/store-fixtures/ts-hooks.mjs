// Lets plain `node` run this repo's TypeScript sources in a child process: Node strips the types itself, and
// this hook maps the `./x.js` specifiers the sources use (NodeNext style) to the `./x.ts` files on disk.
// Used with `--conditions=@threadline/source` so workspace packages resolve to their sources as in vitest.
import { registerHooks } from 'node:module';

registerHooks({
  resolve(specifier, context, nextResolve) {
    try {
      return nextResolve(specifier, context);
    } catch (error) {
      if (error?.code === 'ERR_MODULE_NOT_FOUND' && specifier.startsWith('.') && specifier.endsWith('.js')) {
        return nextResolve(`${specifier.slice(0, -3)}.ts`, context);
      }
      throw error;
    }
  },
});
