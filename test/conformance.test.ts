// Runs the black-box conformance harness against our own server (in process, private
// redis-server, response validation on) and requires zero failures. Cases whose admin-API
// prerequisites are not built yet are reported as skipped by the harness itself.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from './helpers/server';
import { runConformance } from '../conformance/index';

let srv: TestServer;
beforeAll(async () => { srv = await startTestServer(); });
afterAll(async () => { await srv?.stop(); });

describe('conformance harness against this server', () => {
  it('passes every case (features off)', async () => {
    const summary = await runConformance({ runtimeUrl: srv.runtimeUrl, adminUrl: srv.adminUrl, adminKey: srv.adminKey, concurrency: 4 });
    const failures = summary.results.filter((r) => r.outcome === 'fail').map((r) => `${r.id}: ${r.messages.join(' | ')}`);
    expect(failures).toEqual([]);
    // The generic per-operation cases alone are well over a hundred; a harness that
    // silently enumerated nothing would pass with zero failures.
    expect(summary.passed).toBeGreaterThan(150);
    expect(summary.results.some((r) => r.id === 'validation.runtime.releaseReservation' && r.outcome === 'pass')).toBe(true);
  });
});
