// The black-box conformance harness against a server with evidence on and the v0.1.26
// extensions on (response validation on: every cycles_evidence must be schema-valid), then
// every evidence source the run produced must have been signed, stored and removed — none
// left pending (an entry the worker could not read or store) (docs/decisions.md DEV6).
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startTestServer, type TestServer } from './helpers/server';
import { seedOf } from './helpers/evidence';
import { runConformance } from '../conformance/index';

let srv: TestServer;
beforeAll(async () => {
  srv = await startTestServer({
    CYCLES_FEATURES: 'v0.1.26',
    EVIDENCE_SERVER_ID: 'http://127.0.0.1/v1',
    EVIDENCE_SIGNING_PRIVATE_KEY_HEX: Buffer.from(seedOf('cycles-evidence-conformance-test')).toString('hex'),
  });
}, 30_000);
afterAll(async () => { await srv?.stop(); });

it('conformance passes with evidence on, and every evidence source is signed and drained', async () => {
  const summary = await runConformance({ runtimeUrl: srv.runtimeUrl, adminUrl: srv.adminUrl, adminKey: srv.adminKey, features: ['v0.1.26'], evidence: true, concurrency: 4 });
  const failures = summary.results.filter((r) => r.outcome === 'fail').map((r) => `${r.id}: ${r.messages.join(' | ')}`);
  expect(failures).toEqual([]);
  // the --evidence profile's cases ran (not skipped) and every stored envelope is in the export index
  const evidenceCases = summary.results.filter((r) => r.id.startsWith('evidence.'));
  expect(evidenceCases.length).toBeGreaterThan(5);
  expect(evidenceCases.filter((r) => r.outcome !== 'pass').map((r) => `${r.id}: ${r.outcome} ${r.messages.join(' | ')}`)).toEqual([]);
  const c = srv.redis.client;
  const streams: string[] = [];
  let cursor = '0';
  do {
    const [next, found] = await c.scan(cursor, 'MATCH', '*:evidence-src', 'COUNT', 1000);
    cursor = next;
    streams.push(...found);
  } while (cursor !== '0');
  expect(streams.length).toBeGreaterThan(0);
  const deadline = Date.now() + 10_000;
  let left = Infinity;
  while (left > 0 && Date.now() < deadline) {
    left = (await Promise.all(streams.map((s) => c.xlen(s)))).reduce((a, b) => a + b, 0);
    if (left > 0) await new Promise((r) => setTimeout(r, 50));
  }
  expect(left).toBe(0);
  const added = (await Promise.all(streams.map(async (s) => {
    const info = await c.xinfo('STREAM', s) as unknown[];
    return Number(info[info.indexOf('entries-added') + 1]);
  }))).reduce((a, b) => a + b, 0);
  const stored = (await c.keys('cycles:evidence:*')).length;
  console.log(`evidence conformance: ${added} sources from ${streams.length} tenants, ${stored} envelopes stored`);
  expect(stored).toBeGreaterThan(0);
  expect(stored).toBeLessThanOrEqual(added);
  expect(await c.zcard('cycles:evidence-by-time')).toBe(stored);
}, 120_000);
