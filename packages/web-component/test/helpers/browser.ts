import { existsSync } from 'node:fs';
import { describe } from 'vitest';
import { CHROMIUM } from '../../scripts/chromium.mjs';

export { CHROMIUM, launchChromium } from '../../scripts/chromium.mjs';

// What the test pages record from the element's DOM events.
declare global {
  interface Window {
    __events: number[];
    __types: string[];
    __errors: Array<{ code: string; fatal: boolean; message: string }>;
    __states: string[];
    __finished: Array<{ runId: string; ok: boolean }>;
    __longTasks: number[];
    __xss?: unknown;
    __renderMarkdown(source: string): DocumentFragment;
  }
}

const haveChromium = existsSync(CHROMIUM);

/**
 * `describe` for browser suites. Without Chromium a developer machine skips them with a printed reason; CI must
 * have it (the workflow installs it), so there the suite runs and fails at launch instead.
 */
export function browserSuite(name: string): typeof describe | typeof describe.skip {
  if (haveChromium || process.env.CI) return describe;
  console.warn(`skipping "${name}": ${CHROMIUM} is missing (CI=1 makes this a failure)`);
  return describe.skip;
}
