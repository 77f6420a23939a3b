// `cycles reservations list|release` (runtime plane, admin key on the tenant's behalf) and
// `cycles events tail` (admin plane listEvents, polled: the API has no push channel).
import type { Command } from 'commander';
import { randomUUID } from 'node:crypto';
import { stringify } from '../json';
import { request, usageError } from './client';
import { amountText, col, type Column } from './output';
import { action, adminTarget, connOptions, positiveInt, printList, printOne, runtimeTarget, type ConnOptions } from './common';

type Opts = ConnOptions & Record<string, string | boolean | undefined>;
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

const RESERVATION_COLS: Column[] = [
  col('reservation_id', 'reservation_id'), col('status', 'status'), col('reserved', 'reserved', amountText), col('committed', 'committed', amountText),
  col('scope_path', 'scope_path'), col('action', 'action.kind'), col('created', 'created_at_ms', (v) => (typeof v === 'number' ? new Date(v).toISOString() : '-')),
];

export function registerRuntimeCommands(program: Command): void {
  const r = program.command('reservations').description('reservations (runtime API, admin key on a tenant\'s behalf): list, release');
  connOptions(r.command('list').description('a tenant\'s reservations (listReservations)'), ['runtime'])
    .requiredOption('--tenant <tenant_id>', 'the tenant (the API requires it with the admin key)')
    .option('--status <status>', 'ACTIVE, COMMITTED, RELEASED or EXPIRED')
    .option('--workspace <id>', 'subject filter').option('--app <id>', 'subject filter').option('--workflow <id>', 'subject filter')
    .option('--agent <id>', 'subject filter').option('--toolset <id>', 'subject filter')
    .option('--limit <n>', 'page size (1-200)')
    .option('--cursor <cursor>', 'next_cursor of the previous page')
    .option('--sort-by <field>', 'reservation_id, tenant, scope_path, status, reserved, created_at_ms or expires_at_ms')
    .option('--sort-dir <dir>', 'asc or desc')
    .action(action(async (o: Opts) => {
      const query = {
        tenant: str(o.tenant), status: str(o.status)?.toUpperCase(), workspace: str(o.workspace), app: str(o.app), workflow: str(o.workflow), agent: str(o.agent), toolset: str(o.toolset),
        limit: positiveInt('--limit', str(o.limit)), cursor: str(o.cursor), sort_by: str(o.sortBy), sort_dir: str(o.sortDir),
      };
      printList(o, (await request(runtimeTarget(o), 'GET', '/v1/reservations', { query })).body, 'reservations', RESERVATION_COLS);
    }));
  connOptions(r.command('release <reservation_id>').description('release an active reservation\'s hold (releaseReservation)'), ['runtime'])
    .option('--reason <text>', 'recorded with the release')
    .option('--idempotency-key <key>', 'repeat-safe key (default: a random one)')
    .action(action(async (id: string, o: Opts) => {
      const body = { idempotency_key: str(o.idempotencyKey) ?? `cli-${randomUUID()}`, ...(o.reason ? { reason: str(o.reason) } : {}) };
      printOne(o, (await request(runtimeTarget(o), 'POST', `/v1/reservations/${encodeURIComponent(id)}/release`, { body })).body);
    }));

  const e = program.command('events').description('events (admin API): tail');
  connOptions(e.command('tail').description('print events as they happen (polls listEvents; Ctrl-C stops)'))
    .option('--tenant <tenant_id>', 'one tenant\'s events (read from its outbox at once; without it, from the cross-tenant index a few ms later)')
    .option('--event-type <type>', 'one event type')
    .option('--category <category>', 'budget, tenant, api_key, policy, reservation, system or webhook')
    .option('--scope <scope>', 'this scope and below')
    .option('--since <time>', 'start at this time (ISO 8601 or epoch ms) instead of now')
    .option('--last <n>', 'first print the newest n existing events', '0')
    .option('--interval <ms>', 'poll interval', '1000')
    .option('--count <n>', 'exit 0 after printing n events')
    .action(action(async (o: Opts) => tail(o)));
}

/** Re-read this far behind the newest event seen: cross-tenant queries read an index the
 *  relay writes a few ms after the event, so a late-indexed event can carry an older time. */
const OVERLAP_MS = 5_000;
/** Pages read per poll (100 events each); the rest waits for the next poll. */
const PAGES_PER_POLL = 20;

const TAIL_FIELDS = ['timestamp', 'event_type', 'tenant_id', 'scope', 'event_id'] as const;
const TAIL_HEADER = TAIL_FIELDS.map((f) => f.toUpperCase());
const TAIL_WIDTHS = [24, 34, 20, 40];
const tailLine = (cells: string[]): string => cells.map((c, i) => (i < TAIL_WIDTHS.length ? c.padEnd(TAIL_WIDTHS[i]) : c)).join('  ');

interface EventRow { event_id: string; timestamp: string; [k: string]: unknown }

async function tail(o: Opts): Promise<void> {
  const target = adminTarget(o);
  const intervalMs = positiveInt('--interval', str(o.interval))!;
  const last = /^\d+$/.test(str(o.last) ?? '') ? Number(o.last) : (() => { throw usageError('--last: must be a non-negative integer'); })();
  if (last > 100) throw usageError('--last: at most 100');
  const count = positiveInt('--count', str(o.count));
  const filters = { tenant_id: str(o.tenant), event_type: str(o.eventType), category: str(o.category), scope: str(o.scope) };
  let watermark: number | undefined;
  if (o.since !== undefined) {
    const s = str(o.since)!;
    watermark = /^\d+$/.test(s) ? Number(s) : Date.parse(s);
    if (!Number.isFinite(watermark)) throw usageError(`--since: not a time: ${s}`);
  }
  const seen = new Map<string, number>();
  let printed = 0;
  let header = false;
  const emit = (ev: EventRow): boolean => {
    const ts = Date.parse(ev.timestamp);
    if (seen.has(ev.event_id)) return false;
    seen.set(ev.event_id, ts);
    watermark = Math.max(watermark ?? ts, ts);
    if (o.json) console.log(stringify(ev));
    else {
      // one line per event as it comes: fixed widths (a table would need every row first)
      if (!header) { console.log(tailLine(TAIL_HEADER)); header = true; }
      console.log(tailLine(TAIL_FIELDS.map((f) => String(ev[f] ?? '-'))));
    }
    printed++;
    return count !== undefined && printed >= count;
  };

  if (watermark === undefined) {
    // where "now" is: the newest existing event (server clock, not ours)
    const { body } = await request(target, 'GET', '/v1/admin/events', { query: { ...filters, limit: Math.max(last, 1), sort_dir: 'desc' } });
    const rows = ((body as { events?: EventRow[] }).events ?? []);
    for (const ev of rows) { seen.set(ev.event_id, Date.parse(ev.timestamp)); watermark = Math.max(watermark ?? 0, Date.parse(ev.timestamp)); }
    for (const ev of rows.slice(0, last).reverse()) { seen.delete(ev.event_id); if (emit(ev)) return; }
    if (watermark === undefined) watermark = 0;
  }

  let stop = false;
  process.once('SIGINT', () => { stop = true; });
  console.error(`following new events every ${intervalMs} ms (Ctrl-C stops)`);
  while (!stop) {
    let cursor: string | undefined;
    const from = new Date(Math.max(0, watermark! - OVERLAP_MS)).toISOString();
    for (let page = 0; page < PAGES_PER_POLL; page++) {
      const { body } = await request(target, 'GET', '/v1/admin/events', { query: { ...filters, from, sort_dir: 'asc', limit: 100, cursor } });
      const d = body as { events?: EventRow[]; has_more?: boolean; next_cursor?: string };
      for (const ev of d.events ?? []) if (emit(ev)) return;
      if (!d.has_more || !d.next_cursor) break;
      cursor = d.next_cursor;
    }
    // forget ids that fell out of the re-read window (bounded memory)
    for (const [id, ts] of seen) if (ts < watermark! - OVERLAP_MS) seen.delete(id);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
