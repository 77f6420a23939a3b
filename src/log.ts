import pino, { type DestinationStream } from 'pino';

// Structured JSON logs. Secrets never reach a log line: auth headers are not logged
// anywhere, and the redact list is a second line of defence for objects that carry them.
export function createLogger(level: string, destination?: DestinationStream) {
  const options: pino.LoggerOptions = {
    level,
    base: undefined,
    redact: {
      paths: ['*.key_secret', '*.signing_secret', '*.secret', 'headers["x-cycles-api-key"]', 'headers["x-admin-api-key"]'],
      censor: '[redacted]',
    },
  };
  return destination ? pino(options, destination) : pino(options);
}
