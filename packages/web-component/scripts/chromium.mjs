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

export function launchChromium(extraArgs = []) {
  return chromium.launch({ executablePath: CHROMIUM, args: [...CHROMIUM_ARGS, ...extraArgs] });
}
