// The one Chromium launch of the browser tests and benchmarks (this package's and the reference host's):
// the machine's Chromium, headless, with the flags a container without a sandbox or GPU needs. Plain JS so that
// scripts/bench.mjs can use it as well as the TypeScript tests (types in chromium.d.mts).
import { chromium } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/**
 * `THREADLINE_TEST_FRAME_DELAY_MS=400 npx vitest run browser`: every page's animation frames come that much late,
 * as on a loaded CI machine. The element renders on the next frame after an event, so a test that reads the DOM
 * right after waiting for an event (not for the DOM itself) fails at once instead of once in a while.
 */
const FRAME_DELAY_MS = Number(process.env.THREADLINE_TEST_FRAME_DELAY_MS ?? 0);

/* global window */ // runs in the page, not in Node
function delayFrames(ms) {
  const next = window.requestAnimationFrame.bind(window);
  window.requestAnimationFrame = (callback) => next(() => setTimeout(() => callback(performance.now()), ms));
}

export async function launchChromium(extraArgs = []) {
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: [...CHROMIUM_ARGS, ...extraArgs] });
  if (FRAME_DELAY_MS > 0) {
    const newContext = browser.newContext.bind(browser);
    browser.newContext = async (options) => {
      const context = await newContext(options);
      await context.addInitScript(delayFrames, FRAME_DELAY_MS);
      return context;
    };
    browser.newPage = async (options) => (await browser.newContext(options)).newPage();
  }
  return browser;
}
