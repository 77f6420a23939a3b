// RFC 8785 (JCS) as src/evidence/canonical.ts produces it: the value-level rules compared
// with the `canonicalize` package and with the RFC's own examples, the guards the package
// lacks (lone surrogates, non-JSON values), and the int64 boundary of decision DEV1.
import { describe, expect, it } from 'vitest';
import canonicalize from 'canonicalize';
import { canonicalBytes, canonicalJson, CanonicalizationError } from '../src/evidence/canonical';
import { parseJsonBody, parseJsonDoubles, INT64_MAX, INT64_MIN } from '../src/json';
import { ApiError } from '../src/errors';

const P53 = 2n ** 53n;

/** The double whose IEEE 754 bits are `hex`. */
function double(hex: string): number {
  const dv = new DataView(new ArrayBuffer(8));
  dv.setBigUint64(0, BigInt(`0x${hex}`));
  return dv.getFloat64(0);
}

function problem(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    if (e instanceof CanonicalizationError) return e.problem;
    throw e;
  }
  return 'none';
}

describe('RFC 8785 value rules', () => {
  it('matches the RFC §3.2.2 example byte for byte', () => {
    const input = '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001], ' +
      '"string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/", "literals": [null, true, false]}';
    const expected = '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],' +
      '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}';
    expect(canonicalJson(JSON.parse(input), 'ijson')).toBe(expected);
    expect(canonicalJson(JSON.parse(input), 'ijson')).toBe(canonicalize(JSON.parse(input)));
  });

  it('prints the RFC Appendix B numbers', () => {
    const cases: [string, string][] = [
      ['0000000000000000', '0'], ['8000000000000000', '0'], ['0000000000000001', '5e-324'],
      ['8000000000000001', '-5e-324'], ['7fefffffffffffff', '1.7976931348623157e+308'],
      ['ffefffffffffffff', '-1.7976931348623157e+308'], ['4340000000000000', '9007199254740992'],
      ['c340000000000000', '-9007199254740992'], ['4430000000000000', '295147905179352830000'],
      ['44b52d02c7e14af5', '9.999999999999997e+22'], ['44b52d02c7e14af6', '1e+23'],
      ['44b52d02c7e14af7', '1.0000000000000001e+23'], ['444b1ae4d6e2ef4e', '999999999999999700000'],
      ['444b1ae4d6e2ef4f', '999999999999999900000'], ['444b1ae4d6e2ef50', '1e+21'],
      ['3eb0c6f7a0b5ed8c', '9.999999999999997e-7'], ['3eb0c6f7a0b5ed8d', '0.000001'],
      ['41b3de4355555553', '333333333.3333332'], ['41b3de4355555554', '333333333.33333325'],
      ['41b3de4355555555', '333333333.3333333'], ['41b3de4355555556', '333333333.3333334'],
      ['41b3de4355555557', '333333333.33333343'], ['becbf647612f3696', '-0.0000033333333333333333'],
      ['43143ff3c1cb0959', '1424953923781206.2'],
    ];
    for (const [bits, text] of cases) {
      const n = double(bits);
      expect(canonicalJson(n, 'ijson'), bits).toBe(text);
      expect(canonicalJson(n, 'ijson'), bits).toBe(canonicalize(n));
    }
  });

  it('handles the edge values 1e21, 1e-7, -0 like the canonicalize package', () => {
    const v = { big: 1e21, small: 1e-7, negZero: -0, micro: 0.000001, nested: { arr: [-0, 1e-7, 1e21, 0.1] } };
    const text = canonicalJson(v, 'ijson');
    expect(text).toBe('{"big":1e+21,"micro":0.000001,"negZero":0,"nested":{"arr":[0,1e-7,1e+21,0.1]},"small":1e-7}');
    expect(text).toBe(canonicalize(v));
  });

  it('orders members by UTF-16 code units (astral characters before U+FB33)', () => {
    // RFC 8785 §3.2.3's sorting example
    const v = JSON.parse('{"\\u20ac":"Euro Sign","\\r":"Carriage Return","\\ufb33":"Hebrew Letter Dalet With Dagesh",' +
      '"1":"One","\\ud83d\\ude00":"Emoji: Grinning Face","\\u0080":"Control","\\u00f6":"Latin Small Letter O With Diaeresis"}');
    const text = canonicalJson(v, 'ijson');
    // (read the names off the text: Object.keys would put the index-like "1" first)
    const order = [...text.matchAll(/"([^"]*)":"/g)].map((m) => JSON.parse(`"${m[1]}"`).codePointAt(0).toString(16));
    expect(order).toEqual(['d', '31', '80', 'f6', '20ac', '1f600', 'fb33']);
    expect(text).toBe(canonicalize(v));
    // numeric-looking names sort as strings, not numbers
    expect(canonicalJson({ 10: 1, 2: 2, a: 3, A: 4 })).toBe('{"10":1,"2":2,"A":4,"a":3}');
  });

  it('escapes only what JCS escapes', () => {
    const all = Array.from({ length: 0x20 }, (_, i) => String.fromCharCode(i)).join('') + '"\\/\u007f\u2028\u2029é😀';
    const text = canonicalJson({ s: all });
    expect(text).toBe(canonicalize({ s: all }));
    expect(text).toContain('\\u0000\\u0001');
    expect(text).toContain('\\b\\t\\n\\u000b\\f\\r');
    expect(text).toContain('\\u001f\\"\\\\/\u007f\u2028\u2029é😀');
  });

  it('keeps a member named __proto__ (legal JSON) as an ordinary member', () => {
    const v = JSON.parse('{"b":1,"__proto__":{"x":1},"a":2}');
    expect(canonicalJson(v)).toBe('{"__proto__":{"x":1},"a":2,"b":1}');
  });

  it('returns UTF-8 bytes', () => {
    expect(Buffer.from(canonicalBytes({ k: 'é😀' })).toString('hex')).toBe(Buffer.from('{"k":"é😀"}', 'utf8').toString('hex'));
  });
});

describe('guards the package lacks', () => {
  it('rejects lone surrogates in values and in member names (the package escapes them)', () => {
    for (const v of [{ s: '\ud800' }, { s: 'a\udc00b' }, ['\udbff'], { ['\udc00k']: 1 }, { n: { ['x\ud83d']: true } }]) {
      expect(problem(() => canonicalJson(v)), JSON.stringify(v)).toBe('lone_surrogate');
      expect(problem(() => canonicalJson(v, 'ijson'))).toBe('lone_surrogate');
    }
    expect(canonicalize({ s: '\ud800' })).toBe('{"s":"\\ud800"}');
    // a proper pair is fine
    expect(canonicalJson({ s: '\ud83d\ude00' })).toBe('{"s":"😀"}');
  });

  it('rejects non-finite numbers', () => {
    for (const v of [NaN, Infinity, -Infinity, { a: [1, NaN] }]) {
      expect(problem(() => canonicalJson(v, 'ijson'))).toBe('non_finite');
    }
  });

  it('rejects values that are not JSON data instead of converting them', () => {
    for (const v of [new Date(0), new Map(), { f: () => 1 }, { s: Symbol('x') }, [undefined], undefined, new (class K { a = 1 })()]) {
      expect(problem(() => canonicalJson(v))).toBe('not_json');
    }
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(problem(() => canonicalJson(cyclic))).toBe('too_deep');
  });

  it('treats undefined members as absent, keeps null', () => {
    expect(canonicalJson({ a: undefined, b: null, c: 1 })).toBe('{"b":null,"c":1}');
  });
});

describe('int64 beyond 2^53 (decision DEV1)', () => {
  it('writes an int64 exactly when its binary64 form prints it, else refuses', () => {
    const ok: [bigint, string][] = [
      [P53 - 1n, '9007199254740991'], [P53, '9007199254740992'], [P53 + 2n, '9007199254740994'],
      [-P53, '-9007199254740992'], [10n ** 20n, '100000000000000000000'], [0n, '0'], [5n, '5'],
    ];
    for (const [v, text] of ok) expect(canonicalJson({ amount: v }), String(v)).toBe(`{"amount":${text}}`);
    for (const v of [P53 + 1n, -(P53 + 1n), 2n ** 60n, INT64_MAX, INT64_MIN, 1152921504606846977n]) {
      expect(problem(() => canonicalJson({ amount: v })), String(v)).toBe('inexact_integer');
      // the verifier's mode refuses a BigInt the same way: there is no exact text for it
      expect(problem(() => canonicalJson({ amount: v }, 'ijson'))).toBe('inexact_integer');
    }
  });

  it('producer mode refuses an integer-valued double that would print as another integer', () => {
    expect(canonicalJson(2 ** 53)).toBe('9007199254740992');
    expect(problem(() => canonicalJson(2 ** 60))).toBe('inexact_integer'); // would print 1152921504606847000
    expect(problem(() => canonicalJson({ m: 1e21 }))).toBe('inexact_integer');
    expect(canonicalJson(2 ** 60, 'ijson')).toBe('1152921504606847000');
  });

  it('end to end from request text: parsed exactly, then canonicalized exactly or refused', () => {
    const at = (text: string) => parseJsonBody(`{"amount":${text}}`).value;
    expect(canonicalJson(at('9007199254740991'))).toBe('{"amount":9007199254740991}');
    expect(canonicalJson(at('9007199254740992'))).toBe('{"amount":9007199254740992}');
    expect(typeof (at('9007199254740993') as { amount: unknown }).amount).toBe('bigint');
    expect(problem(() => canonicalJson(at('9007199254740993')))).toBe('inexact_integer');
    expect(problem(() => canonicalJson(at('9223372036854775807')))).toBe('inexact_integer');
    // never silently rounded: the message names both the value and what it would become
    expect(() => canonicalJson(at('9223372036854775807'))).toThrow(/9223372036854775807 .*9223372036854776000/);
  });
});

describe('parseJsonDoubles (the verifier parser)', () => {
  it('keeps I-JSON doubles, refuses duplicates and lone surrogate escapes', () => {
    expect(parseJsonDoubles('{"a":1e21,"b":9007199254740993}')).toEqual({ a: 1e21, b: 9007199254740992 });
    expect(() => parseJsonDoubles('{"a":1,"a":1}')).toThrow(ApiError);
    expect(() => parseJsonDoubles('{"a":"\\ud800"}')).toThrow(ApiError);
    expect(() => parseJsonDoubles('{"a":')).toThrow(ApiError);
  });
});

describe('one-pass writer = the canonicalize package on JSON data', () => {
  it('agrees on 3000 random documents (seeded)', () => {
    let seed = 0x2545f491;
    const rnd = () => { seed ^= seed << 13; seed ^= seed >>> 17; seed ^= seed << 5; return (seed >>> 0) / 2 ** 32; };
    const pick = <T>(a: T[]): T => a[Math.floor(rnd() * a.length)];
    const chars = ['a', 'Z', '0', ' ', '"', '\\', '\n', '\u0000', '\u001f', '\u007f', 'é', '\u2028', '\ufb33', '😀', '\ud83d\ude00', '€', '/'];
    const str = () => Array.from({ length: Math.floor(rnd() * 6) }, () => pick(chars)).join('');
    const nums = [0, -0, 1, -1, 0.1, 1e21, 1e-7, 123.456, -5e-324, 2 ** 53, 2 ** 53 - 1, 1.7976931348623157e308, 4.35, 0.000001];
    const gen = (d: number): unknown => {
      const r = rnd();
      if (d > 4 || r < 0.35) return pick<unknown>([null, true, false, pick(nums), str(), Math.floor(rnd() * 1e6)]);
      if (r < 0.6) return Array.from({ length: Math.floor(rnd() * 4) }, () => gen(d + 1));
      const o: Record<string, unknown> = {};
      for (let i = Math.floor(rnd() * 5); i > 0; i--) o[str()] = gen(d + 1);
      return o;
    };
    for (let i = 0; i < 3000; i++) {
      const v = gen(0);
      expect(canonicalJson(v, 'ijson')).toBe(canonicalize(v));
    }
  });
});
