// Correlation ids per the runtime spec's CORRELATION AND TRACING section: traceparent
// wins, then X-Cycles-Trace-Id, else a fresh non-zero id. Malformed headers are ignored,
// never rejected. request_id is always server-generated.
import { randomBytes } from 'node:crypto';

const TRACE_RE = /^[0-9a-f]{32}$/;
const ZERO32 = '0'.repeat(32);
const TRACEPARENT_RE = /^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$/;

export function traceIdFrom(traceparent: unknown, cyclesTraceId: unknown): string {
  if (typeof traceparent === 'string') {
    const m = TRACEPARENT_RE.exec(traceparent.trim());
    if (m && m[1] !== ZERO32 && m[2] !== '0000000000000000') return m[1];
  }
  if (typeof cyclesTraceId === 'string' && TRACE_RE.test(cyclesTraceId) && cyclesTraceId !== ZERO32) {
    return cyclesTraceId;
  }
  return newTraceId();
}

// Random bytes are drawn from a pooled buffer: one CSPRNG call per 256 ids instead of one
// per request.
const POOL_IDS = 256;
let pool = Buffer.alloc(0);
let poolOffset = 0;

export function newTraceId(): string {
  for (;;) {
    if (poolOffset >= pool.length) {
      pool = randomBytes(16 * POOL_IDS);
      poolOffset = 0;
    }
    const id = pool.toString('hex', poolOffset, poolOffset + 16);
    poolOffset += 16;
    if (id !== ZERO32) return id;
  }
}

/** req_ + 32 hex (128 random bits), from the same pooled randomness as trace ids. */
export function newRequestId(): string {
  return `req_${newTraceId()}`;
}
