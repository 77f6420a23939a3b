// Unit tests of src/http/tracing.ts against the runtime spec's CORRELATION AND TRACING rules.
import { describe, expect, it } from 'vitest';
import { traceIdFrom, newTraceId, newRequestId } from '../src/http/tracing';

const T1 = '4bf92f3577b34da6a3ce929d0e0e4736';
const T2 = '0af7651916cd43dd8448eb211c80319c';
const SPAN = '00f067aa0ba902b7';
const ZERO32 = '0'.repeat(32);
const HEX32 = /^[0-9a-f]{32}$/;

describe('traceIdFrom', () => {
  it('uses the trace-id of a valid traceparent', () => {
    expect(traceIdFrom(`00-${T1}-${SPAN}-01`, undefined)).toBe(T1);
    expect(traceIdFrom(`00-${T1}-${SPAN}-00`, undefined)).toBe(T1);
  });

  it('traceparent wins over a different valid X-Cycles-Trace-Id', () => {
    expect(traceIdFrom(`00-${T1}-${SPAN}-01`, T2)).toBe(T1);
  });

  it('uses a valid X-Cycles-Trace-Id when there is no traceparent', () => {
    expect(traceIdFrom(undefined, T2)).toBe(T2);
  });

  it('falls through a malformed traceparent to X-Cycles-Trace-Id', () => {
    for (const bad of [
      'garbage', '', `00-${T1}-${SPAN}`, `01-${T1}-${SPAN}-01`, `00-${ZERO32}-${SPAN}-01`, `00-${T1}-${'0'.repeat(16)}-01`,
      `00-${T1.toUpperCase()}-${SPAN}-01`, `00-${T1}x-${SPAN}-01`, `00-${T1.slice(1)}-${SPAN}-01`, `00-${T1}-${SPAN}-1`,
    ]) {
      expect(traceIdFrom(bad, T2), bad).toBe(T2);
    }
  });

  it('ignores a malformed X-Cycles-Trace-Id (fresh id instead)', () => {
    for (const bad of [ZERO32, T2.toUpperCase(), `${T2}0`, T2.slice(1), 'not-a-trace-id', '', `g${T2.slice(1)}`]) {
      const got = traceIdFrom(undefined, bad);
      expect(got, bad).toMatch(HEX32);
      expect(got).not.toBe(bad.toLowerCase());
      expect(got).not.toBe(ZERO32);
    }
  });

  it('ignores non-string header values (repeated headers arrive as arrays)', () => {
    expect(traceIdFrom([`00-${T1}-${SPAN}-01`], [T2])).toMatch(HEX32);
    expect(traceIdFrom([`00-${T1}-${SPAN}-01`], T2)).toBe(T2);
  });

  it('generates a fresh, non-zero, 32-hex id when nothing usable is sent', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const id = traceIdFrom(undefined, undefined);
      expect(id).toMatch(HEX32);
      expect(id).not.toBe(ZERO32);
      seen.add(id);
    }
    expect(seen.size).toBe(200);
  });
});

describe('id generators', () => {
  it('newTraceId is 32 lowercase hex and never all-zero', () => {
    for (let i = 0; i < 100; i++) expect(newTraceId()).toMatch(HEX32);
  });
  it('newRequestId is unique per call', () => {
    const ids = new Set(Array.from({ length: 500 }, () => newRequestId()));
    expect(ids.size).toBe(500);
    for (const id of ids) expect(id).toMatch(/^req_[0-9a-f]{32}$/);
  });
});
