// The README's operations table is generated (`npm run ops -- --markdown`) and must match
// the handler files: an operation implemented or scaffolded without updating the README
// fails here, with the command to run.
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from '../src/config';
import { coverageMarkdown, coverageReport, handlerStatus, SCAFFOLD_MARKER } from '../src/ops';
import { operations } from '../src/generated/operations';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';

describe('README operations table', () => {
  it('is what `npm run ops -- --markdown` prints now', () => {
    const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
    const m = /<!-- ops-table:begin -->\n([\s\S]*?)<!-- ops-table:end -->/.exec(readme);
    expect(m, 'README.md lacks the <!-- ops-table:begin/end --> markers').not.toBeNull();
    expect(m![1], 'README operations table is stale: paste the output of `npm run --silent ops -- --markdown` between the markers').toBe(coverageMarkdown());
  });

  it('has one row per operation, with its status', () => {
    const md = coverageMarkdown();
    const rows = md.split('\n').filter((l) => l.startsWith('| runtime |') || l.startsWith('| admin |'));
    expect(rows).toHaveLength(operations.length);
    const report = coverageReport();
    expect(md).toContain(`${report.implemented} of ${operations.length} operations implemented`);
  });

  it('a handler file holding the scaffold marker counts as a skeleton, not as implemented', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cycles-ops-'));
    try {
      const f = join(dir, 'x.ts');
      expect(handlerStatus(f)).toBe('not-yet');
      writeFileSync(f, `// ${SCAFFOLD_MARKER}\nexport default () => {};\n`);
      expect(handlerStatus(f)).toBe('scaffold');
      writeFileSync(f, 'export default () => {};\n');
      expect(handlerStatus(f)).toBe('implemented');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
