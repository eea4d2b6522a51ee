#!/usr/bin/env node
import { runCli } from './cli-main.js';

void runCli(process.argv.slice(2), process.env).then((code) => {
  if (code !== null) process.exitCode = code;
});
