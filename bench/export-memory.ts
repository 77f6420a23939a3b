// Export memory check: seeds N committed reservations of one UTC day (direct hashes, the
// layout of src/ledger/model.ts via test/helpers/seedReservations.ts) into a private
// redis-server, runs the reservations export of that day in this process, and reports rows,
// seconds, rows/s and the peak RSS / heap seen while exporting — run it at two sizes to see
// that memory does not grow with the day (`npx tsx bench/export-memory.ts 20000 200000`).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startTestRedis } from '../test/helpers/redis';
import { putReservation } from '../test/helpers/seedReservations';
import { loadConfig } from '../src/config';
import { keys } from '../src/store/keys';
import { runExport } from '../src/export/run';
import { DAY_MS, dayOf } from '../src/export/days';

const sizes = process.argv.slice(2).map(Number).filter((n) => n > 0);
const DAY = Date.UTC(2026, 0, 15);
const r = await startTestRedis();
try {
  let seeded = 0;
  for (const n of sizes.length ? sizes : [20_000, 200_000]) {
    const tenant = 'bench';
    await r.client.sadd(keys.tenants(), tenant);
    while (seeded < n) {
      const batch: Promise<void>[] = [];
      for (let i = 0; i < 1000 && seeded < n; i++, seeded++) {
        batch.push(putReservation(r.client, tenant, {
          id: `res_${tenant}_${seeded.toString(16).padStart(32, '0')}`, status: 'COMMITTED',
          subject: { tenant, workspace: 'w', agent: `agent-${seeded % 50}` }, created_at_ms: DAY + (seeded % DAY_MS),
          charged: 90, estimate: 100, metadata: { run: `r-${seeded}` },
        }));
      }
      await Promise.all(batch);
    }
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cycles-export-bench-'));
    global.gc?.();
    let peakRss = process.memoryUsage().rss;
    let peakHeap = process.memoryUsage().heapUsed;
    const before = { rss: peakRss, heap: peakHeap };
    const timer = setInterval(() => {
      const m = process.memoryUsage();
      peakRss = Math.max(peakRss, m.rss);
      peakHeap = Math.max(peakHeap, m.heapUsed);
    }, 20);
    const t0 = performance.now();
    const rep = await runExport({ redis: r.client, config: loadConfig({}), dir, from: dayOf(DAY), to: dayOf(DAY), nowMs: DAY + 3 * DAY_MS, classes: ['reservations'] });
    const s = (performance.now() - t0) / 1000;
    clearInterval(timer);
    const file = path.join(dir, rep.written[0]);
    const MB = (b: number) => (b / 1048576).toFixed(1);
    console.log(`${n} rows: ${s.toFixed(1)} s (${Math.round(n / s)} rows/s), file ${MB(fs.statSync(file).size)} MB; RSS ${MB(before.rss)} -> peak ${MB(peakRss)} MB, heap ${MB(before.heap)} -> peak ${MB(peakHeap)} MB`);
    fs.rmSync(dir, { recursive: true, force: true });
  }
} finally {
  await r.stop();
}
