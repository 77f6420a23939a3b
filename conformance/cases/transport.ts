// HTTP-level behaviour every plane shares: unknown routes, wrong methods, unreadable or
// oversized bodies. Each answer is an ErrorResponse with the correlation ids, never a 5xx.
import type { Plane } from '../../src/generated/operations';
import type { Case, CaseContext } from '../harness';

/** An operation on each plane that takes a JSON body and accepts the admin key, so body
 *  handling is reached without any tenant state: releaseReservation / createTenant. */
function bodyTarget(ctx: CaseContext, plane: Plane) {
  const op = plane === 'runtime' ? ctx.op('runtime', 'releaseReservation') : ctx.op('admin', 'createTenant');
  return { op, path: op.path.replace('{reservation_id}', 'conf-no-such-reservation') };
}

const MIB = 1024 * 1024;

/** Every answer is an ErrorResponse with the documented status and the correlation ids. */
const TRANSPORT_META: Pick<Case, 'level' | 'requirements' | 'tags'> = { level: 'MUST', requirements: ['ERR.ENVELOPE', 'RT.TRACE.ECHO'], tags: ['transport'] };

export function transportCases(): Case[] {
  const out: Case[] = [];
  for (const plane of ['runtime', 'admin'] as const) {
    out.push(
      {
        id: `transport.${plane}.unknown-route`,
        title: `${plane}: unknown route → 404 NOT_FOUND`,
        plane,
        ...TRANSPORT_META,
        async run(ctx) {
          ctx.expectStatus(await ctx.call(plane, 'GET', '/v1/conformance/no-such-route'), 404, 'NOT_FOUND');
          ctx.expectStatus(await ctx.call(plane, 'POST', '/nope', { body: {} }), 404, 'NOT_FOUND');
        },
      },
      {
        id: `transport.${plane}.wrong-method`,
        title: `${plane}: wrong method on a known path → 405 with Allow`,
        plane,
        ...TRANSPORT_META,
        async run(ctx) {
          const path = plane === 'runtime' ? '/v1/reservations' : '/v1/admin/tenants';
          const res = await ctx.call(plane, 'PUT', path, { admin: true, body: {} });
          ctx.expectStatus(res, 405);
          const allow = (res.headers.get('allow') ?? '').toUpperCase();
          ctx.check(allow.includes('GET') && allow.includes('POST'), `Allow header lists GET and POST (got "${allow}")`);
        },
      },
      {
        id: `transport.${plane}.malformed-json`,
        title: `${plane}: malformed JSON body → 400 INVALID_REQUEST`,
        plane,
        ...TRANSPORT_META,
        async run(ctx) {
          const { op, path } = bodyTarget(ctx, plane);
          for (const raw of ['{"idempotency_key": ', '{bad json}', '{"a":1}}', '\u0000']) {
            ctx.expectStatus(await ctx.call(plane, 'POST', path, { op, admin: true, rawBody: raw }), 400, 'INVALID_REQUEST');
          }
        },
      },
      {
        id: `transport.${plane}.wrong-content-type`,
        title: `${plane}: non-JSON Content-Type → 400 INVALID_REQUEST`,
        plane,
        ...TRANSPORT_META,
        async run(ctx) {
          const { op, path } = bodyTarget(ctx, plane);
          const res = await ctx.call(plane, 'POST', path, {
            op, admin: true, rawBody: '{"idempotency_key":"k1"}', headers: { 'Content-Type': 'text/plain' },
          });
          ctx.expectStatus(res, 400, 'INVALID_REQUEST');
        },
      },
      {
        id: `transport.${plane}.body-too-large`,
        title: `${plane}: body over 1 MiB → 413 ErrorResponse`,
        plane,
        ...TRANSPORT_META,
        async run(ctx) {
          const { path } = bodyTarget(ctx, plane);
          const raw = `{"pad":"${'x'.repeat(MIB)}"}`;
          const res = await ctx.call(plane, 'POST', path, { admin: true, rawBody: raw });
          ctx.expectStatus(res, 413);
        },
      },
      {
        id: `transport.${plane}.deep-nesting`,
        title: `${plane}: JSON nested 1000 levels deep → 400, not a crash`,
        plane,
        ...TRANSPORT_META,
        async run(ctx) {
          const { op, path } = bodyTarget(ctx, plane);
          const raw = `{"metadata":${'['.repeat(1000)}${']'.repeat(1000)}}`;
          ctx.expectStatus(await ctx.call(plane, 'POST', path, { op, admin: true, rawBody: raw }), 400, 'INVALID_REQUEST');
          const rawObj = `${'{"a":'.repeat(1000)}1${'}'.repeat(1000)}`;
          ctx.expectStatus(await ctx.call(plane, 'POST', path, { op, admin: true, rawBody: rawObj }), 400, 'INVALID_REQUEST');
        },
      },
      {
        id: `transport.${plane}.empty-body`,
        title: `${plane}: missing required body → 400 INVALID_REQUEST`,
        plane,
        ...TRANSPORT_META,
        async run(ctx) {
          const { op, path } = bodyTarget(ctx, plane);
          ctx.expectStatus(await ctx.call(plane, 'POST', path, { op, admin: true, headers: { 'Content-Type': 'application/json' } }), 400, 'INVALID_REQUEST');
        },
      },
    );
  }
  return out;
}
