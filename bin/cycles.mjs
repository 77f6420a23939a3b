#!/usr/bin/env node
// npm bin entry: runs the TypeScript CLI through tsx's loader (no separate build step).
import { register } from 'tsx/esm/api';
register();
await import('../src/cli.ts');
