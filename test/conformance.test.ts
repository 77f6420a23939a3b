// Runs the black-box conformance harness against our own server (in process, private
// redis-server, response validation on) and requires zero failures. Cases whose admin-API
// prerequisites are not built yet are reported as skipped by the harness itself.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from './helpers/server';
import { runConformance } from '../conformance/index';

let srv: TestServer;
let ext: TestServer; // CYCLES_FEATURES=v0.1.26
beforeAll(async () => { [srv, ext] = await Promise.all([startTestServer(), startTestServer({ CYCLES_FEATURES: 'v0.1.26' })]); });
afterAll(async () => { await Promise.all([srv?.stop(), ext?.stop()]); });

describe('conformance harness against this server', () => {
  it('passes every case (features off)', async () => {
    const summary = await runConformance({ runtimeUrl: srv.runtimeUrl, adminUrl: srv.adminUrl, adminKey: srv.adminKey, concurrency: 4 });
    const failures = summary.results.filter((r) => r.outcome === 'fail').map((r) => `${r.id}: ${r.messages.join(' | ')}`);
    expect(failures).toEqual([]);
    // The generic per-operation cases alone are well over a hundred; a harness that
    // silently enumerated nothing would pass with zero failures.
    expect(summary.passed).toBeGreaterThan(150);
    expect(summary.results.some((r) => r.id === 'validation.runtime.releaseReservation' && r.outcome === 'pass')).toBe(true);
    // the admin-plane behaviour cases run for real here (a 501 would only skip them)
    const admin = summary.results.filter((r) => r.id.startsWith('admin.'));
    expect(admin.length).toBeGreaterThanOrEqual(18);
    expect(admin.filter((r) => r.outcome !== 'pass').map((r) => `${r.id}: ${r.outcome} ${r.messages.join(' | ')}`)).toEqual([]);
    // flag off: the two base test vectors and the flag-off governance checks run for real
    const off = summary.results.filter((r) => ['vector.allow_happy_path', 'vector.deny_budget_exceeded'].includes(r.id) || r.id.startsWith('governance.flag-off.'));
    expect(off.map((r) => `${r.id}: ${r.outcome}`)).toEqual(off.map((r) => `${r.id}: pass`));
    expect(off.length).toBe(4);
  });

  it('passes every case with --features v0.1.26 against a server with the extensions on', async () => {
    const summary = await runConformance({ runtimeUrl: ext.runtimeUrl, adminUrl: ext.adminUrl, adminKey: ext.adminKey, features: ['v0.1.26'], concurrency: 4 });
    const failures = summary.results.filter((r) => r.outcome === 'fail').map((r) => `${r.id}: ${r.messages.join(' | ')}`);
    expect(failures).toEqual([]);
    // with the feature on, the extension operations get real auth/validation cases
    expect(summary.results.find((r) => r.id === 'validation.runtime.resetActionQuotaCounter')?.outcome).toBe('pass');
    // all twelve upstream test vectors and the governance cases run for real (a missing
    // prerequisite would only skip them)
    const gov = summary.results.filter((r) => r.id.startsWith('vector.') || (r.id.startsWith('governance.') && !r.id.startsWith('governance.flag-off.')));
    expect(gov.filter((r) => r.outcome !== 'pass').map((r) => `${r.id}: ${r.outcome} ${r.messages.join(' | ')}`)).toEqual([]);
    expect(gov.filter((r) => r.id.startsWith('vector.')).length).toBe(12);
    expect(gov.length).toBeGreaterThanOrEqual(22);
  });
});
