// npm run conformance -- --runtime-url URL --admin-url URL --admin-key KEY [options]
// (the same command as `npx cycles conformance`; see cli.ts for the options and exit codes).
import { runConformanceCli } from './cli';

// exit at once: idle keep-alive connections to the server under test would hold the process
process.exit(await runConformanceCli(process.argv.slice(2)));
