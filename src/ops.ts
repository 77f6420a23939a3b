// Coverage of the operation table: which operations have a handler file, and which of
// those are still the skeleton `npm run codegen -- --pin DIR --scaffold` wrote (answers 501).
import { existsSync, readFileSync } from 'node:fs';
import { operations } from './generated/operations';
import { handlerFile } from './handlers';

/** The marker line of a scaffolded handler (codegen/scaffold.ts); remove it once implemented. */
export const SCAFFOLD_MARKER = '@cycles-scaffold';

export type OperationStatus = 'implemented' | 'scaffold' | 'not-yet';

export function handlerStatus(file: string): OperationStatus {
  if (!existsSync(file)) return 'not-yet';
  return readFileSync(file, 'utf8').includes(SCAFFOLD_MARKER) ? 'scaffold' : 'implemented';
}

export function coverageReport() {
  const rows = operations.map((o) => ({
    operationId: o.operationId,
    plane: o.plane,
    method: o.method,
    path: o.path,
    feature: o.feature,
    status: handlerStatus(handlerFile(o.plane, o.operationId)),
  }));
  const implemented = rows.filter((r) => r.status === 'implemented').length;
  const scaffold = rows.filter((r) => r.status === 'scaffold').length;
  return { rows, implemented, scaffold, notYet: rows.length - implemented - scaffold };
}

const STATUS_TEXT: Record<OperationStatus, string> = {
  'implemented': '✅ implemented',
  'scaffold': '🚧 skeleton (501)',
  'not-yet': '❌ not yet (501)',
};

/** The README's operations table (`cycles ops --markdown`; test/ops-readme.test.ts keeps it in sync). */
export function coverageMarkdown(): string {
  const r = coverageReport();
  const lines = [
    `${r.implemented} of ${r.rows.length} operations implemented` +
      `${r.scaffold ? `, ${r.scaffold} skeletons answering 501` : ''}${r.notYet ? `, ${r.notYet} not yet (501)` : ''}. ` +
      '`v0.1.26` rows are served only with `CYCLES_FEATURES=v0.1.26`; `GET /v1/balances` and the action-kinds ' +
      'operations are served on both planes.',
    '',
    '| plane | feature | method | path | operationId | status |',
    '|---|---|---|---|---|---|',
  ];
  for (const o of r.rows) {
    lines.push(`| ${o.plane} | ${o.feature} | ${o.method.toUpperCase()} | \`${o.path}\` | \`${o.operationId}\` | ${STATUS_TEXT[o.status]} |`);
  }
  return lines.join('\n') + '\n';
}
