import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';
import { describe } from 'vitest';

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

export const CHROMIUM = '/usr/bin/chromium';
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

/** Launches the machine's Chromium headless with the flags this sandbox needs. */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}
