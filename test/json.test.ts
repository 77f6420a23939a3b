// int64 exactness end to end: src/json.ts parse/serialise boundaries, the HTTP pipeline
// (a reserve carries the amount into Redis and back), and a Lua round trip of 2^63−1.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTestServer, call, type TestServer } from './helpers/server';
import { putBudget, putTenant, getBudget } from './helpers/fixtures';
import { parseJsonBody, stringify, toBig, toJsonInt, INT64_MAX, INT64_MIN } from '../src/json';
import { ApiError } from '../src/errors';
import { loadScript, runScript } from '../src/store/scripts';

const P53 = 2n ** 53n;
let srv: TestServer;
let n = 0;

beforeAll(async () => { srv = await startTestServer(); });
afterAll(async () => { await srv?.stop(); });

/** A fresh tenant with a budget of 2^63−1 and its key. */
async function tenant(): Promise<{ id: string; key: string }> {
  const id = `json-t${++n}`;
  await putTenant(srv.redis.client, id);
  await putBudget(srv.redis.client, id, `tenant:${id}`, 'USD_MICROCENTS', { allocated: INT64_MAX });
  return { id, key: await srv.tenantKey(id) };
}

/** A reserve request whose estimate.amount is the literal JSON text `amountText`. */
function reserveText(t: string, amountText: string, idem: string): string {
  return `{"idempotency_key":"${idem}","subject":{"tenant":"${t}"},"action":{"kind":"llm.completion","name":"j"},` +
    `"estimate":{"unit":"USD_MICROCENTS","amount":${amountText}}}`;
}

describe('src/json.ts', () => {
  it('parses integers at the int64 and 2^53 boundaries exactly', () => {
    expect(parseJsonBody('{"a":9007199254740991}').value).toEqual({ a: 9007199254740991 });
    expect(parseJsonBody('{"a":9007199254740993}').value).toEqual({ a: P53 + 1n });
    expect(parseJsonBody('{"a":9223372036854775807}').value).toEqual({ a: INT64_MAX });
    expect(parseJsonBody('{"a":-9223372036854775808}').value).toEqual({ a: INT64_MIN });
    // the ajv view is numeric, the value exact
    expect(typeof (parseJsonBody('[9223372036854775807]').view as unknown[])[0]).toBe('number');
  });

  it('rejects what cannot be an exact int64 with INVALID_REQUEST', () => {
    for (const text of ['{"a":9223372036854775808}', '{"a":-9223372036854775809}', '{"a":1e30}', '{"a":9007199254740993.0}', '[1e400]']) {
      let err: unknown;
      try { parseJsonBody(text); } catch (e) { err = e; }
      expect(err, text).toBeInstanceOf(ApiError);
      expect((err as ApiError).code).toBe('INVALID_REQUEST');
    }
  });

  it('serialises BigInt exactly and keeps safe integers as numbers', () => {
    expect(stringify({ a: INT64_MAX, b: 5n, c: [P53 + 1n], s: 'x' })).toBe('{"a":9223372036854775807,"b":5,"c":[9007199254740993],"s":"x"}');
    expect(toJsonInt(P53 - 1n)).toBe(9007199254740991);
    expect(toJsonInt(P53 + 1n)).toBe(P53 + 1n);
    expect(toBig('9223372036854775807')).toBe(INT64_MAX);
    expect(() => toBig(1.5)).toThrow(ApiError);
  });

  it('a user string that looks like the BigInt placeholder is not rewritten', () => {
    const s = '\u0001i64abc:123';
    expect(JSON.parse(stringify({ s, n: INT64_MAX }))).toEqual({ s, n: Number(INT64_MAX) });
  });
});

describe('int64 through HTTP into Redis and back', () => {
  for (const [name, v] of [['2^53−1', P53 - 1n], ['2^53+1', P53 + 1n], ['2^63−1', INT64_MAX]] as const) {
    it(`reserve of ${name} is exact in the response and in the ledger`, async () => {
      const t = await tenant();
      const res = await call(srv.runtimeUrl, 'POST', '/v1/reservations', { key: t.key, rawBody: reserveText(t.id, v.toString(), `idem-${name}`) });
      expect(res.status, res.text).toBe(200);
      expect(res.text).toContain(`"amount":${v.toString()}`);
      expect(BigInt(res.body.reserved.amount)).toBe(v);
      const b = await getBudget(srv.redis.client, t.id, `tenant:${t.id}`, 'USD_MICROCENTS');
      expect(b.reserved).toBe(v.toString());
      expect(b.remaining).toBe((INT64_MAX - v).toString());
    });
  }

  const bad: [string, string][] = [
    ['2^63', '9223372036854775808'],
    ['−2^63−1', '-9223372036854775809'],
    ['1.5 in an integer field', '1.5'],
    ['1e30', '1e30'],
    ['a negative amount', '-1'],
  ];
  for (const [name, text] of bad) {
    it(`${name} → 400 INVALID_REQUEST and no ledger change`, async () => {
      const t = await tenant();
      const res = await call(srv.runtimeUrl, 'POST', '/v1/reservations', { key: t.key, rawBody: reserveText(t.id, text, 'idem-bad') });
      expect(res.status, res.text).toBe(400);
      expect(res.body.error).toBe('INVALID_REQUEST');
      const b = await getBudget(srv.redis.client, t.id, `tenant:${t.id}`, 'USD_MICROCENTS');
      expect(b.reserved).toBe('0');
    });
  }
});

describe('Lua round trip', () => {
  it('stores 9223372036854775807 via a script and reads it back exact', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cycles-lua-'));
    try {
      writeFileSync(join(dir, 'json_roundtrip.lua'), [
        "redis.call('HSET', KEYS[1], 'v', ARGV[1])",
        "local stored = redis.call('HGET', KEYS[1], 'v')",
        // HINCRBY by 0 proves Redis itself parses it as an int64; i64_add keeps it exact in Lua.
        "local viaRedis = redis.call('HINCRBY', KEYS[1], 'v', 0)",
        "return cjson.encode({ stored = stored, sum = i64_add(stored, '0'), redis = tostring(viaRedis), minus1 = i64_sub(stored, '1'), over = i64_add(stored, '1') == nil })",
      ].join('\n'));
      const script = loadScript('json_roundtrip', dir);
      const body = parseJsonBody('{"amount":9223372036854775807}').value as { amount: bigint };
      const out = JSON.parse(String(await runScript(srv.redis.client, script, ['{t:json}:roundtrip'], [body.amount.toString()])));
      expect(out.stored).toBe('9223372036854775807');
      expect(out.sum).toBe('9223372036854775807');
      expect(out.minus1).toBe('9223372036854775806');
      expect(out.over).toBe(true);
      // Redis returns the HINCRBY integer reply to Lua as a double; only the string paths are exact.
      expect(stringify({ amount: toBig(out.stored) })).toBe('{"amount":9223372036854775807}');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
