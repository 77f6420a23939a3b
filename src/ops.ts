// Coverage of the operation table: which operations have a handler file.
import { existsSync } from 'node:fs';
import { operations } from './generated/operations';
import { handlerFile } from './handlers';

export function coverageReport() {
  const rows = operations.map((o) => ({
    operationId: o.operationId,
    plane: o.plane,
    method: o.method,
    path: o.path,
    feature: o.feature,
    status: existsSync(handlerFile(o.plane, o.operationId)) ? 'implemented' : 'not-yet',
  }));
  const implemented = rows.filter((r) => r.status === 'implemented').length;
  return { rows, implemented, notYet: rows.length - implemented };
}
