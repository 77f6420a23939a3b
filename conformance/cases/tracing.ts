// CORRELATION AND TRACING (runtime spec): traceparent wins, then X-Cycles-Trace-Id, else a
// fresh non-zero 32-hex id; malformed headers are ignored, never rejected; every response
// carries X-Request-Id and X-Cycles-Trace-Id, and ErrorResponse echoes both.
import { randomBytes } from 'node:crypto';
import type { Plane } from '../../src/generated/operations';
import type { Case, CaseContext } from '../harness';

const hex = (bytes: number) => randomBytes(bytes).toString('hex');

/** A request that every server answers with an ErrorResponse without state: 401 on a protected op. */
async function probe(ctx: CaseContext, plane: Plane, headers: Record<string, string>) {
  const op = plane === 'runtime' ? ctx.op('runtime', 'createReservation') : ctx.op('admin', 'listTenants');
  const res = await ctx.call(plane, op.method.toUpperCase(), op.path, { op, headers, body: op.method === 'post' ? {} : undefined });
  ctx.expectStatus(res, 401, 'UNAUTHORIZED');
  return res;
}

function traced(plane: Plane, id: string, title: string, headers: () => { send: Record<string, string>; want?: string; notIn?: string[] }): Case {
  return {
    id: `tracing.${plane}.${id}`,
    title: `${plane}: ${title}`,
    plane,
    level: 'MUST',
    requirements: ['RT.TRACE.INBOUND', 'RT.TRACE.ECHO', 'RT.TRACE.ERROR_BODY', 'SHOULD.TRACE_PROPAGATION'],
    tags: ['tracing'],
    async run(ctx) {
      const { send, want, notIn } = headers();
      const res = await probe(ctx, plane, send);
      const got = res.headers.get('x-cycles-trace-id');
      if (want) ctx.check(got === want, `X-Cycles-Trace-Id ${got}, want ${want}`);
      for (const n of notIn ?? []) ctx.check(got !== n.toLowerCase(), `malformed trace id ${n} was echoed`);
      ctx.check(res.body?.trace_id === got, `ErrorResponse.trace_id ${res.body?.trace_id} != header ${got}`);
    },
  };
}

export function tracingCases(): Case[] {
  const out: Case[] = [];
  for (const plane of ['runtime', 'admin'] as const) {
    out.push(
      traced(plane, 'traceparent-echoed', 'a valid traceparent sets the trace id', () => {
        const t = hex(16);
        return { send: { traceparent: `00-${t}-${hex(8)}-01` }, want: t };
      }),
      traced(plane, 'cycles-trace-id-echoed', 'a valid X-Cycles-Trace-Id is echoed', () => {
        const t = hex(16);
        return { send: { 'X-Cycles-Trace-Id': t }, want: t };
      }),
      traced(plane, 'traceparent-wins', 'traceparent wins over a different X-Cycles-Trace-Id', () => {
        const a = hex(16);
        return { send: { traceparent: `00-${a}-${hex(8)}-01`, 'X-Cycles-Trace-Id': hex(16) }, want: a };
      }),
      traced(plane, 'malformed-traceparent', 'a malformed traceparent is ignored (fresh id, no 4xx for it)', () => {
        const t = hex(16);
        return { send: { traceparent: `zz-${t}-nothex-01` }, notIn: [t] };
      }),
      traced(plane, 'zero-traceparent', 'an all-zero traceparent trace id is ignored', () => ({
        send: { traceparent: `00-${'0'.repeat(32)}-${hex(8)}-01` }, notIn: ['0'.repeat(32)],
      })),
      traced(plane, 'malformed-cycles-trace-id', 'a malformed X-Cycles-Trace-Id is ignored', () => ({
        send: { 'X-Cycles-Trace-Id': 'not-a-trace-id' }, notIn: ['not-a-trace-id'],
      })),
      traced(plane, 'uppercase-cycles-trace-id', 'an uppercase-hex X-Cycles-Trace-Id is not echoed verbatim', () => {
        const t = `A${hex(16).slice(1).toUpperCase()}`;
        return { send: { 'X-Cycles-Trace-Id': t }, notIn: [t] };
      }),
      traced(plane, 'zero-span-traceparent', 'a traceparent with an all-zero span id is ignored', () => {
        const t = hex(16);
        return { send: { traceparent: `00-${t}-${'0'.repeat(16)}-01` }, notIn: [t] };
      }),
      traced(plane, 'other-version-traceparent', 'a traceparent of another version than 00 is ignored', () => {
        const t = hex(16);
        return { send: { traceparent: `01-${t}-${hex(8)}-01` }, notIn: [t] };
      }),
      traced(plane, 'malformed-traceparent-falls-back', 'a malformed traceparent falls back to a valid X-Cycles-Trace-Id', () => {
        const t = hex(16);
        return { send: { traceparent: 'garbage', 'X-Cycles-Trace-Id': t }, want: t };
      }),
      {
        id: `tracing.${plane}.fresh-ids`,
        title: `${plane}: without trace headers every response gets a fresh trace id and request id`,
        plane,
        level: 'MUST',
        requirements: ['RT.TRACE.INBOUND', 'RT.TRACE.ECHO'],
        tags: ['tracing'],
        async run(ctx) {
          const a = await probe(ctx, plane, {});
          const b = await probe(ctx, plane, {});
          ctx.check(a.headers.get('x-cycles-trace-id') !== b.headers.get('x-cycles-trace-id'), 'two requests share a generated trace id');
          ctx.check(a.headers.get('x-request-id') !== b.headers.get('x-request-id'), 'two requests share a request id');
        },
      },
      {
        id: `tracing.${plane}.health`,
        title: `${plane}: correlation headers on non-protocol routes too (404)`,
        plane,
        level: 'MUST',
        requirements: ['RT.TRACE.ECHO', 'RT.TRACE.ERROR_BODY'],
        tags: ['tracing'],
        async run(ctx) {
          const t = hex(16);
          const res = await ctx.call(plane, 'GET', '/v1/conformance-no-such-route', { headers: { 'X-Cycles-Trace-Id': t } });
          ctx.expectStatus(res, 404, 'NOT_FOUND');
          ctx.check(res.headers.get('x-cycles-trace-id') === t, 'trace id not echoed on 404');
        },
      },
    );
  }
  return out;
}
