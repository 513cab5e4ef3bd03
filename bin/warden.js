#!/usr/bin/env node
// Node 20 cannot run TypeScript itself: register tsx, then load the CLI.
import { register } from 'tsx/esm/api';

register();
await import('../src/cli/main.ts');
