// The requirement catalogue and the case tags agree: catalogue ids are unique, every id a
// case names exists, every case carries a level, and the behavioural depth the issue asked
// for stays in place (the cases naming the hierarchy / lifecycle requirements exist).
import { describe, expect, it } from 'vitest';
import { CATALOG } from '../conformance/catalog';
import { allCases } from '../conformance/index';

describe('conformance requirement catalogue', () => {
  const cases = allCases();
  const ids = new Set(CATALOG.map((r) => r.id));

  it('has unique ids, a level and a source for every entry', () => {
    expect(ids.size).toBe(CATALOG.length);
    for (const r of CATALOG) {
      expect(['MUST', 'SHOULD', 'MAY']).toContain(r.level);
      expect(r.source.length).toBeGreaterThan(0);
      expect(r.text.length).toBeGreaterThan(0);
    }
  });

  it('every requirement a case names is in the catalogue; every case has a level', () => {
    const unknown = cases.flatMap((c) => (c.requirements ?? []).filter((r) => !ids.has(r)).map((r) => `${c.id}: ${r}`));
    expect(unknown).toEqual([]);
    expect(cases.filter((c) => !c.level).map((c) => c.id)).toEqual([]);
  });

  it('the defects the mutation run found are each named by a case', () => {
    const named = new Set(cases.flatMap((c) => c.requirements ?? []));
    for (const id of ['CORE.CONCURRENCY_SAFE', 'RT.SCOPE.ANCESTORS_ENFORCED', 'RT.IDEM.CONCURRENT', 'RT.EXTEND.MAX_EXTENSIONS',
      'RT.LIST.STATUS_FILTER', 'RT.LIST.SORT', 'RT.OVERAGE.REJECT', 'RT.OVERAGE.ALLOW_IF_AVAILABLE', 'RT.OVERAGE.ALLOW_WITH_OVERDRAFT',
      'ERR.TENANT_CLOSED.PERSISTING', 'AUTH.PERMISSIONS', 'AUTH.RESERVATION_OWNERSHIP']) {
      expect(named.has(id), id).toBe(true);
    }
  });
});
