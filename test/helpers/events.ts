// The one shared check for every Event a test produces: the admin spec's `Event` schema
// AND the `EventData*` variant of its event_type (src/events/model.ts EVENT_DATA_SCHEMA,
// itself checked against the spec text in test/events-model.test.ts), with Ajv 2020 on
// the generated admin document. An event_type outside the spec fails, except `custom.*`
// (the spec's extension rule) — and the v0.1.26 extension types, which validate against
// their own EventData variants (the base Event.event_type enum does not list them).
import Ajv2020 from 'ajv/dist/2020';
import addFormats from 'ajv-formats';
import type { ErrorObject, ValidateFunction } from 'ajv';
import { loadDocument } from '../../src/generated/documents';
import { EVENT_DATA_SCHEMA, categoryOf, parseEventId, renderEvent, fieldsOf } from '../../src/events/model';
import { toView } from '../../src/json';
import type { Redis } from 'ioredis';
import { keys } from '../../src/store/keys';

const doc = loadDocument('admin');
const ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: true });
addFormats(ajv);
ajv.addSchema(doc, 'admin');

const compiled = new Map<string, ValidateFunction>();
function validator(name: string): ValidateFunction {
  let v = compiled.get(name);
  if (!v) {
    v = ajv.compile({ $ref: `admin#/components/schemas/${name}` });
    compiled.set(name, v);
  }
  return v;
}

const BASE_TYPES = new Set<string>(doc.components.schemas.EventType.enum);
const EXTENSION_TYPES = new Set<string>((doc.components.schemas.EventTypeExtension?.enum ?? []).filter((t: string) => !BASE_TYPES.has(t)));

const fmt = (errs: ErrorObject[] | null | undefined, where: string) =>
  (errs ?? []).map((e) => `${where}${e.instancePath || '/'} ${e.message}${e.params ? ' ' + JSON.stringify(e.params) : ''}`);

/** Problems of one event (empty = valid). */
export function eventProblems(event: unknown): string[] {
  const view = toView(event) as Record<string, any>;
  if (!view || typeof view !== 'object') return ['event is not an object'];
  const type = String(view.event_type ?? '');
  const custom = type.startsWith('custom.');
  const extension = EXTENSION_TYPES.has(type);
  const problems: string[] = [];
  const ev = validator('Event');
  if (!ev(view)) {
    // custom.* and v0.1.26 extension types are outside the base EventType/EventCategory
    // enums by definition; every other Event rule still applies to them.
    const errs = (ev.errors ?? []).filter((e) => !((custom || extension)
      && (e.instancePath === '/event_type' || e.instancePath === '/category')));
    problems.push(...fmt(errs, 'Event'));
  }
  if (!custom && !BASE_TYPES.has(type) && !extension) problems.push(`unknown event_type ${JSON.stringify(type)}`);
  if (view.category !== categoryOf(type)) problems.push(`category ${view.category} is not the prefix of ${type}`);
  if (!custom) {
    const variant = EVENT_DATA_SCHEMA[type];
    if (!variant) problems.push(`no EventData variant for ${type}`);
    else if (view.data !== undefined) {
      const dv = validator(variant);
      if (!dv(view.data)) problems.push(...fmt(dv.errors, `${variant} data`));
    }
  }
  if (typeof view.event_id === 'string' && !view.event_id.startsWith('evt_test_')) {
    const p = parseEventId(view.event_id);
    if (!p) problems.push(`event_id ${view.event_id} is not evt_<ms>_<seq>_<tenant>`);
    else if (p.tenant !== view.tenant_id) problems.push(`event_id names tenant ${p.tenant}, tenant_id is ${view.tenant_id}`);
  }
  return problems;
}

/** Throws (failing the test) unless `event` is a valid Event with valid data for its type. */
export function expectValidEvent(event: unknown): void {
  const problems = eventProblems(event);
  if (problems.length) {
    throw new Error(`invalid Event ${JSON.stringify(toView(event))}:\n  ${problems.join('\n  ')}`);
  }
}

/** Every event in a tenant's outbox, rendered (renderEvent) — what the API serves. */
export async function storedEvents(redis: Redis, tenant: string): Promise<ReturnType<typeof renderEvent>[]> {
  const rows = await redis.xrange(keys.outbox(tenant), '-', '+');
  return rows.map(([id, flat]) => renderEvent(tenant, id, fieldsOf(flat)));
}

/** Checks every stored event of one category, in every outbox of this Redis, with
 *  expectValidEvent; returns how many were checked. */
export async function expectValidStoredEvents(redis: Redis, category: string): Promise<number> {
  let checked = 0;
  let cursor = '0';
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', '*:outbox', 'COUNT', 1000);
    cursor = next;
    for (const k of batch) {
      const tenant = k.slice(3, k.lastIndexOf('}'));
      for (const e of await storedEvents(redis, tenant)) {
        if (e.category !== category) continue;
        expectValidEvent(e);
        checked++;
      }
    }
  } while (cursor !== '0');
  return checked;
}
