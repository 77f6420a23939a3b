// The handler skeleton `npm run codegen -- --pin DIR --scaffold` writes for an operation
// without a handler (decision DB3): typed against the generated document types, answering
// 501 until implemented. The SCAFFOLD_MARKER line makes `npm run ops` (and the README table)
// list it as a skeleton rather than implemented; delete that line once it is.
import type { OperationInfo } from './emit-operations';

/** same text as src/ops.ts SCAFFOLD_MARKER (codegen does not import the server) */
const MARKER = '@cycles-scaffold';

export function scaffoldHandler(op: OperationInfo): string {
  const id = op.operationId;
  return `// ${op.method.toUpperCase()} ${op.path} — ${id} (${op.plane} plane, feature ${op.feature}, from ${op.sourceSpec})
// ${MARKER}: written by \`npm run codegen -- --pin DIR --scaffold\`. Answers 501 until it is
// implemented; \`npm run ops\` lists it as a skeleton. Delete this line when it is done.
import type { HandlerContext, HandlerResult } from '../../src/http/types';
import { ApiError } from '../../src/errors';
import type { operations } from '../../src/generated/${op.plane}.types';

type Op = operations['${id}'];
/** the request body as the spec defines it (ctx.body, already validated); never when there is none */
export type RequestBody = Op extends { requestBody?: { content: { 'application/json': infer B } } } ? B : never;
/** the spec's responses, by status */
export type Responses = Op['responses'];

export default async function ${id}(_ctx: HandlerContext): Promise<HandlerResult> {
  throw new ApiError('NOT_IMPLEMENTED', 'Operation ${id} is not implemented yet by this server', undefined, 501);
}
`;
}
