// Runs the `cycles` command line as an operator does (`node bin/cycles.mjs …`, a real child
// process) and collects its exit code and output.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { REPO_ROOT } from '../../src/config';

export const BIN = path.join(REPO_ROOT, 'bin', 'cycles.mjs');

export interface Run { code: number; stdout: string; stderr: string }

/** One CLI run to completion (bounded: 180 s; a CI machine may be loaded: each run is a Node start with tsx). */
export function cycles(env: Record<string, string>, ...args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], {
      cwd: REPO_ROOT, timeout: 180_000, maxBuffer: 16 * 1024 * 1024,
      env: { ...process.env, CYCLES_LOG_LEVEL: 'silent', ...env },
    }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** A CLI run that keeps going (events tail): output so far, and its end. */
export function startCycles(env: Record<string, string>, ...args: string[]): { child: ChildProcess; out: { stdout: string; stderr: string }; done: Promise<number> } {
  const child = spawn(process.execPath, [BIN, ...args], { cwd: REPO_ROOT, env: { ...process.env, CYCLES_LOG_LEVEL: 'silent', ...env } });
  const out = { stdout: '', stderr: '' };
  child.stdout.on('data', (d) => { out.stdout += String(d); });
  child.stderr.on('data', (d) => { out.stderr += String(d); });
  const done = new Promise<number>((resolve) => child.on('close', (code) => resolve(code ?? -1)));
  return { child, out, done };
}

/** Polls `cond` every 100 ms until it holds, or fails after `ms`. */
export async function waitFor(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
