// canonicalJson (the idempotency payload form) must stay byte-identical to the RFC 8785
// `canonicalize` package it replaced — stored idempotency records hash this text, so any
// difference would turn legitimate replays into IDEMPOTENCY_MISMATCH after an upgrade.
import { describe, expect, it } from 'vitest';
import canonicalize from 'canonicalize';
import { canonicalJson, payloadHash } from '../src/ledger/idempotency';
import { parseJsonBody } from '../src/json';

describe('canonicalJson', () => {
  it('equals canonicalize on random JSON values (unicode keys, escapes, numbers, nesting)', () => {
    let seed = 7;
    const rnd = (n: number) => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed % n; };
    const strs = ['', 'a', 'B', 'é', '\u20ac', '\ud83d\ude00', 'line\nbreak', 'quote"', 'back\\slash', '\u0000', '\u2028', 'z', '10', '9', 'aa', 'A'];
    const nums = [0, -0, 1, -1, 1.5, 1e21, 1e-7, 123456789012, 2 ** 53 - 1, -(2 ** 53 - 1), 0.1 + 0.2, 5e-324];
    const gen = (d: number): unknown => {
      const k = rnd(d > 3 ? 4 : 6);
      if (k === 0) return strs[rnd(strs.length)];
      if (k === 1) return nums[rnd(nums.length)];
      if (k === 2) return [true, false, null][rnd(3)];
      if (k === 3) return d > 3 ? null : strs[rnd(strs.length)] + rnd(100);
      if (k === 4) return Array.from({ length: rnd(4) }, () => gen(d + 1));
      const o: Record<string, unknown> = {};
      for (let i = rnd(5); i > 0; i--) o[strs[rnd(strs.length)] + (rnd(2) ? '' : strs[rnd(strs.length)])] = gen(d + 1);
      if (rnd(4) === 0) o.skip = undefined;
      return o;
    };
    for (let i = 0; i < 2000; i++) {
      const v = gen(0);
      expect(canonicalJson(v)).toBe(canonicalize(v));
    }
  });

  it('writes BigInt as the exact JSON integer (int64 boundaries) and sorts keys by code units', () => {
    const body = parseJsonBody('{"b":9223372036854775807,"a":[9007199254740993,-9223372036854775808],"\u00e9":1,"Z":2}').value;
    expect(canonicalJson(body)).toBe('{"Z":2,"a":[9007199254740993,-9223372036854775808],"b":9223372036854775807,"\u00e9":1}');
    expect(payloadHash({ x: 1n, y: 'a' })).toBe(payloadHash(parseJsonBody('{"y":"a","x":1}').value));
  });

  it('rejects values without a JSON form', () => {
    expect(() => canonicalJson(undefined)).toThrow();
    expect(() => canonicalJson({ n: Number.NaN })).toThrow();
    expect(() => canonicalJson([Infinity])).toThrow();
  });
});
