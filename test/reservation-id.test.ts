// Reservation ids pin their tenant (docs/decisions.md DR9).
import { describe, expect, it } from 'vitest';
import { newReservationId, ownerOf } from '../src/ledger/reservationId';

describe('reservation ids', () => {
  it('round-trip the tenant, including tenants with "_" and "-"', () => {
    for (const t of ['acme', 'a-b-c', 'x_y', 'res_', '_', 'a'.repeat(64)]) {
      const id = newReservationId(t);
      expect(ownerOf(id)).toBe(t);
      expect(id.length).toBeLessThanOrEqual(4 + 64 + 1 + 32); // within the 128-char path parameter
    }
  });

  it('are unique', () => {
    const ids = new Set(Array.from({ length: 2000 }, () => newReservationId('t')));
    expect(ids.size).toBe(2000);
  });

  it('ids that are not ours pin no tenant', () => {
    const hex = '0123456789abcdef0123456789abcdef';
    for (const id of ['', 'res_', `res_${hex}`, `res__${hex}`, `rsv_t_${hex}`, `res_t-${hex}`, `res_t_${hex.toUpperCase()}`, `res_t_${hex}0`, 'w1']) {
      expect(ownerOf(id), id).toBeUndefined();
    }
    expect(ownerOf(`res_t_${hex}`)).toBe('t');
  });
});
