#!/usr/bin/env node
console.log('threadline-agent: not built yet');
