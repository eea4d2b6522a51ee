import type { Browser } from 'playwright-core';

/** Path of the Chromium the browser tests and benchmarks use: `CHROMIUM_PATH`, else `/usr/bin/chromium`. */
export declare const CHROMIUM: string;
/** Its flags: headless, and what a container without a sandbox or GPU needs. */
export declare const CHROMIUM_ARGS: readonly string[];
/** Launches {@link CHROMIUM} with {@link CHROMIUM_ARGS} and `extraArgs` (pages' animation frames delayed by `THREADLINE_TEST_FRAME_DELAY_MS` when set). */
export declare function launchChromium(extraArgs?: readonly string[]): Promise<Browser>;
