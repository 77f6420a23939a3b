// Output of the operator CLI: `--json` prints the API's document as received (int64 exact);
// otherwise a plain text table of the columns an operator scans for.
import { stringify } from '../json';

export interface Column {
  header: string;
  /** the cell text; undefined, null and '' show as '-' */
  get(row: Record<string, unknown>): unknown;
}

/** `{amount, unit}` → `1200 TOKENS`; anything else → its text. */
export function amountText(v: unknown): string {
  if (v && typeof v === 'object' && 'amount' in v) {
    const a = v as { amount: unknown; unit?: unknown };
    return `${String(a.amount)}${a.unit ? ` ${String(a.unit)}` : ''}`;
  }
  return cellText(v);
}

function cellText(v: unknown): string {
  if (v === undefined || v === null || v === '') return '-';
  if (Array.isArray(v) && v.length && v.every(isBalance)) return v.map((b) => `${b.scope}: ${amountText(b.remaining)} left`).join('; ');
  if (Array.isArray(v)) return v.length ? v.map(cellText).join(',') : '-';
  if (typeof v === 'object') return stringify(v);
  return String(v);
}

/** Column of one field (dotted path allowed: `actor.type`). */
export function col(header: string, field: string, fmt: (v: unknown) => string = cellText): Column {
  return {
    header,
    get: (row) => fmt(field.split('.').reduce<unknown>((o, k) => (o && typeof o === 'object' ? (o as Record<string, unknown>)[k] : undefined), row)),
  };
}

/** Fixed-width table, columns separated by two spaces; cells past 60 characters are cut,
 *  except in the last column (nothing to misalign after it). */
export function table(rows: Record<string, unknown>[], columns: Column[]): string {
  const cells = rows.map((r) => columns.map((c, i) => (i === columns.length - 1 ? cellText(c.get(r)) : clip(cellText(c.get(r))))));
  const widths = columns.map((c, i) => Math.max(c.header.length, ...cells.map((r) => r[i].length)));
  const line = (parts: string[]) => parts.map((p, i) => (i === parts.length - 1 ? p : p.padEnd(widths[i]))).join('  ').trimEnd();
  return [line(columns.map((c) => c.header.toUpperCase())), ...cells.map(line)].join('\n');
}

function clip(s: string): string {
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

/** One object as `field: value` lines (nested objects as compact JSON). */
export function record(obj: Record<string, unknown>): string {
  const keys = Object.keys(obj);
  const w = Math.max(0, ...keys.map((k) => k.length));
  return keys.map((k) => `${k.padEnd(w)}  ${k.endsWith('allocated') || isAmount(obj[k]) ? amountText(obj[k]) : cellText(obj[k])}`).join('\n');
}

function isBalance(v: unknown): v is { scope: string; remaining: unknown } {
  return !!v && typeof v === 'object' && typeof (v as { scope?: unknown }).scope === 'string' && 'remaining' in v;
}

function isAmount(v: unknown): boolean {
  return !!v && typeof v === 'object' && !Array.isArray(v) && 'amount' in v && 'unit' in v && Object.keys(v).length === 2;
}

/** Pretty JSON with int64 beyond 2^53 written exactly (BigInt → integer literal). */
export function prettyJson(doc: unknown): string {
  const mark = '\u0001i64:';
  const text = JSON.stringify(doc, (_k, v: unknown) => (typeof v === 'bigint' ? mark + v.toString() : v), 2) ?? 'null';
  return text.replace(/"\\u0001i64:(-?\d+)"/g, '$1');
}

export function printJson(doc: unknown): void {
  process.stdout.write(`${prettyJson(doc)}\n`);
}
