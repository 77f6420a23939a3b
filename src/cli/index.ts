// The operator commands of `cycles` (src/cli.ts registers them): demo, doctor, the admin
// resources, reservations and events. Exit codes (docs/decisions.md DU1): 0 ok, 1 the API
// answered an error (its ErrorResponse printed) or a doctor check failed, 2 usage error,
// 3 the server could not be reached.
import type { Command } from 'commander';
import { registerAdminCommands } from './admin';
import { registerDemo } from './demo';
import { registerDoctor } from './doctor';
import { registerRuntimeCommands } from './runtime';
import { EXIT } from './client';

export function registerOperatorCommands(program: Command): void {
  program.addHelpText('after', `
Exit codes: 0 ok; 1 the API answered an error (its ErrorResponse is printed on stderr as
received) or a doctor check failed; 2 usage error (bad or missing option or argument);
3 the server could not be reached. \`evidence verify\` documents its own (see its --help).
Connection: --admin-url / CYCLES_ADMIN_URL (default http://127.0.0.1:7979), --runtime-url /
CYCLES_RUNTIME_URL (default http://127.0.0.1:7878), --admin-key / ADMIN_API_KEY.`);
  registerDemo(program);
  registerDoctor(program);
  registerAdminCommands(program);
  registerRuntimeCommands(program);
}

/** Commander ends a bad command line with exit 1; scripts get 2 for usage errors here
 *  (unknown option, missing argument or required option), 0 for --help, on every command. */
export function applyUsageExitCode(cmd: Command): void {
  cmd.exitOverride((err) => process.exit(err.exitCode === 0 ? EXIT.ok : EXIT.usage));
  for (const sub of cmd.commands) applyUsageExitCode(sub);
}
