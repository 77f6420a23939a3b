// Reservation ids pin their owning tenant: `res_<tenant>_<32 hex>` (docs/decisions.md DR9;
// the runtime spec's getReservation TENANCY note: "reservation_id already pins the owner").
// Every operation addressed by id therefore knows the tenant slot without a lookup: the
// admin key acts in that tenant, and a tenant key presenting another tenant's id is told
// 403 (the reservation exists there) or 404, with no cross-tenant index to keep in step.
// Tenant ids are at most 64 characters (admin TenantCreateRequest), so ids stay within
// the 128-character reservation_id path parameter.
import { newTraceId } from '../http/tracing';

const PREFIX = 'res_';
const RANDOM_HEX = 32;
const HEX32 = /^[0-9a-f]{32}$/;

/** A new id for a reservation of `tenant` (128 random bits). */
export function newReservationId(tenant: string): string {
  return `${PREFIX}${tenant}_${newTraceId()}`;
}

/** The tenant an id was issued for, or undefined when the id is not one of ours. The
 *  random part has a fixed length, so tenant ids containing '_' still parse. */
export function ownerOf(id: string): string | undefined {
  const sep = id.length - RANDOM_HEX - 1;
  if (sep <= PREFIX.length || !id.startsWith(PREFIX) || id.charCodeAt(sep) !== 95 /* _ */) return undefined;
  if (!HEX32.test(id.slice(sep + 1))) return undefined;
  return id.slice(PREFIX.length, sep);
}
