// Per-operation cases, enumerated from the generated operation table: authentication
// (401 without credentials, 401 with a wrong admin key, public operations never 401),
// request validation (a schema-invalid request is 400 INVALID_REQUEST), and the feature
// gate (v0.1.26 operations are 404 while the feature is off).
import { operations, type OperationInfo } from '../../src/generated/operations';
import { fillPath, type Case, type CaseContext } from '../harness';
import { invalidRequest, samplePathParams } from '../invalid';
import { SpecValidator } from '../validate';
import { opMeta } from './tags';

const accepts = (op: OperationInfo, scheme: string) => op.security.some((alt) => alt.includes(scheme));
const isPublic = (op: OperationInfo) => op.security.length === 0;
const gatedOff = (ctx: CaseContext, op: OperationInfo) => op.feature !== 'base' && !ctx.features.has(op.feature);
const label = (op: OperationInfo) => `${op.method.toUpperCase()} ${op.path}`;

function unauthenticated(op: OperationInfo): Case {
  return {
    id: `auth.none.${op.plane}.${op.operationId}`,
    title: `${label(op)} without credentials`,
    plane: op.plane,
    ...opMeta(op, isPublic(op) ? [] : ['AUTH.API_KEY', 'ERR.ENVELOPE'], ['auth']),
    // A public operation reaches its handler; one not built yet is skipped, not failed.
    skipOn501: isPublic(op),
    async run(ctx) {
      const path = fillPath(op.path, samplePathParams(ctx.spec, op));
      const body = op.method === 'get' || op.method === 'delete' ? undefined : {};
      const res = await ctx.call(op.plane, op.method.toUpperCase(), path, { op, body });
      if (gatedOff(ctx, op)) {
        ctx.expectStatus(res, 404, 'NOT_FOUND');
      } else if (isPublic(op)) {
        ctx.check(res.status !== 401 && res.status !== 403, `public operation answered ${res.status}`);
      } else {
        ctx.expectStatus(res, 401, 'UNAUTHORIZED');
      }
    },
  };
}

function wrongAdminKey(op: OperationInfo): Case {
  return {
    id: `auth.wrong-admin-key.${op.plane}.${op.operationId}`,
    title: `${label(op)} with a wrong admin key`,
    plane: op.plane,
    ...opMeta(op, ['ERR.ENVELOPE'], ['auth']),
    async run(ctx) {
      const res = await ctx.call(op.plane, op.method.toUpperCase(), fillPath(op.path, {}), {
        op, admin: `${ctx.opts.adminKey}-wrong`, body: op.method === 'get' || op.method === 'delete' ? undefined : {},
      });
      if (gatedOff(ctx, op)) ctx.expectStatus(res, 404, 'NOT_FOUND');
      else ctx.expectStatus(res, 401, 'UNAUTHORIZED');
    },
  };
}

function invalidInput(op: OperationInfo, what: string): Case {
  return {
    id: `validation.${op.plane}.${op.operationId}`,
    title: `${label(op)} rejects a schema-invalid request (${what})`,
    plane: op.plane,
    ...opMeta(op, ['OPS.CONTRACT', 'ERR.ENVELOPE'], ['validation']),
    async run(ctx) {
      const bad = invalidRequest(ctx.spec, op)!;
      const auth: { admin?: boolean; key?: string } = {};
      if (!gatedOff(ctx, op) && !isPublic(op)) {
        if (accepts(op, 'AdminKeyAuth')) auth.admin = true;
        else auth.key = (await ctx.fixtures.sharedTenant(ctx)).key;
      }
      const res = await ctx.call(op.plane, op.method.toUpperCase(), fillPath(op.path, bad.params), {
        op, ...auth, query: bad.query, body: bad.body,
      });
      if (gatedOff(ctx, op)) ctx.expectStatus(res, 404, 'NOT_FOUND');
      else ctx.expectStatus(res, 400, 'INVALID_REQUEST');
    },
  };
}

export function operationCases(): Case[] {
  const spec = new SpecValidator();
  const out: Case[] = [];
  for (const op of operations) {
    out.push(unauthenticated(op));
    if (accepts(op, 'AdminKeyAuth')) out.push(wrongAdminKey(op));
    const bad = invalidRequest(spec, op);
    // Operations with no input the schema constrains (no body, no constrained parameter)
    // have no schema-invalid request; the shared tenant key of ApiKeyAuth-only operations
    // comes from the admin API, so those cases skip while createTenant/createApiKey are 501.
    if (bad) out.push(invalidInput(op, bad.what));
  }
  return out;
}
