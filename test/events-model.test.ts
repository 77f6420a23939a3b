// src/events/model.ts without Redis: event ids, the EventData table against the spec text,
// rendering of stored entries (int64 strings, *_ms times, closed actor), and the shared
// expectValidEvent helper itself (it must reject what the spec rejects).
import { describe, expect, it } from 'vitest';
import { loadDocument } from '../src/generated/documents';
import {
  EVENT_DATA_SCHEMA, TENANT_VISIBLE_CATEGORIES, comparePos, eventIdOf, parseEventId, posOf, renderEvent,
} from '../src/events/model';
import { eventFields } from '../src/events/outbox';
import { eventProblems, expectValidEvent } from './helpers/events';

const doc = loadDocument('admin');
const schemas = doc.components.schemas;

const entry = (type: string, data: object, extra: Record<string, string> = {}) => {
  const flat = eventFields(type, data, { trace_id: 'a'.repeat(32), request_id: 'req-1', actor_json: '{"type":"admin"}' }, 1_700_000_000_123);
  const f: Record<string, string> = {};
  for (let i = 0; i < flat.length; i += 2) f[flat[i]] = flat[i + 1];
  return { ...f, ...extra };
};

describe('event ids', () => {
  it('evt_<ms>_<seq>_<tenant> round-trips, tenant may hold underscores and dashes', () => {
    for (const t of ['acme', '__system__', 'a-b_c', 'x_1_2']) {
      const id = eventIdOf(t, '1700000000123-7');
      expect(id).toBe(`evt_1700000000123_7_${t}`);
      expect(parseEventId(id)).toEqual({ tenant: t, streamId: '1700000000123-7', ms: 1700000000123n, seq: 7n });
    }
  });

  it('rejects foreign and non-canonical ids (one entry has exactly one id)', () => {
    for (const bad of ['evt_1_2', 'evt_01_2_acme', 'evt_1_02_acme', 'evt_x_2_acme', 'evt_1_2_', 'foo', '', 'evt_99999999999999999999_0_a']) {
      expect(parseEventId(bad)).toBeUndefined();
    }
  });

  it('positions sort by (ms, seq numerically, tenant): seq 10 after seq 9', () => {
    const a = posOf('evt_5_9_t')!, b = posOf('evt_5_10_t')!, c = posOf('evt_6_0_a')!;
    expect([c, b, a].sort(comparePos)).toEqual([a, b, c]);
  });
});

describe('EventData table', () => {
  it('covers every EventType of the spec, and matches each variant\'s "Payload for" text', () => {
    for (const t of schemas.EventType.enum as string[]) expect(EVENT_DATA_SCHEMA[t], t).toBeDefined();
    for (const [type, variant] of Object.entries(EVENT_DATA_SCHEMA)) {
      expect(schemas[variant], variant).toBeDefined();
      expect(String(schemas[variant].description), `${variant} names ${type}`).toContain(type);
    }
  });

  it('tenant-visible categories are budget, reservation, tenant', () => {
    expect([...TENANT_VISIBLE_CATEGORIES].sort()).toEqual(['budget', 'reservation', 'tenant']);
  });
});

describe('renderEvent', () => {
  it('int64 strings become exact integers (BigInt beyond 2^53), nested states too', () => {
    const ev = renderEvent('acme', '1700000000123-0', entry('budget.funded', {
      ledger_id: 'l1', scope: 'tenant:acme', unit: 'TOKENS', operation: 'CREDIT',
      previous_state: { allocated: '9223372036854775000', remaining: '5', debt: '0' },
      new_state: { allocated: '9223372036854775807', remaining: '812', debt: '0' },
    }));
    expectValidEvent(ev);
    expect(ev.data!.previous_state).toEqual({ allocated: 9223372036854775000n, remaining: 5, debt: 0 });
    expect((ev.data!.new_state as any).allocated).toBe(9223372036854775807n);
    expect(ev.scope).toBe('tenant:acme'); // from data.scope
    expect(ev).toMatchObject({ event_id: 'evt_1700000000123_0_acme', category: 'budget', tenant_id: 'acme',
      timestamp: '2023-11-14T22:13:20.123Z', request_id: 'req-1', trace_id: 'a'.repeat(32), actor: { type: 'admin' }, source: 'cycles-server' });
  });

  it('reservation.expired: *_ms become date-times, ttl_ms is derived', () => {
    const ev = renderEvent('acme', '1700000000123-0', entry('reservation.expired', {
      reservation_id: 'r', scope: 'tenant:acme', unit: 'TOKENS', estimated_amount: '10',
      created_at_ms: '1700000000000', expired_at_ms: '1700000070000', expires_at_ms: '1700000060000', extensions_used: 0,
    }, { actor: '{"type":"system"}', request_id: '' }));
    expectValidEvent(ev);
    expect(ev.data).toMatchObject({ created_at: '2023-11-14T22:13:20.000Z', expired_at: '2023-11-14T22:14:30.000Z', ttl_ms: 60000, estimated_amount: 10 });
    expect(ev.request_id).toBeUndefined();
  });

  it('malformed stored fields are omitted, never rendered invalid', () => {
    const ev = renderEvent('acme', '1-0', { type: 'tenant.updated', data: '{bad', actor: '{"type":"hacker","x":1}', trace_id: 'XYZ', ts_ms: '' });
    expectValidEvent(ev);
    expect(ev).not.toHaveProperty('data');
    expect(ev).not.toHaveProperty('actor');
    expect(ev).not.toHaveProperty('trace_id');
  });

  it('an actor keeps only the schema\'s properties', () => {
    const ev = renderEvent('acme', '1-0', entry('api_key.created', { key_id: 'k' }, { actor: '{"type":"api_key","key_id":"k1","secret":"x"}' }));
    expect(ev.actor).toEqual({ type: 'api_key', key_id: 'k1' });
  });
});

describe('expectValidEvent', () => {
  const good = () => renderEvent('acme', '1-0', entry('tenant.created', { tenant_id: 'acme', new_status: 'ACTIVE', changed_fields: [] }));

  it('accepts a valid event and custom.* types', () => {
    expectValidEvent(good());
    expectValidEvent({ ...good(), event_type: 'custom.billing.invoice_sent', category: 'custom', data: { anything: 1 } });
  });

  it('rejects unknown types, bad data for the variant, extra properties, wrong category', () => {
    expect(eventProblems({ ...good(), event_type: 'tenant.exploded' }).join()).toMatch(/unknown event_type/);
    expect(eventProblems({ ...good(), data: { tenant_id: 'acme', new_status: 'GONE' } }).join()).toMatch(/EventDataTenantLifecycle/);
    expect(eventProblems({ ...good(), extra: 1 }).join()).toMatch(/additional/);
    expect(eventProblems({ ...good(), category: 'budget' }).join()).toMatch(/prefix/);
    expect(eventProblems({ ...good(), event_id: 'evt_1_0_other' }).join()).toMatch(/names tenant/);
    expect(() => expectValidEvent({ ...good(), timestamp: 'yesterday' })).toThrow(/date-time/);
  });
});
