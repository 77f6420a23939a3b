// The reservation hash as stored (src/store/lua/reservation_record.lua, docs/decisions.md
// DM1) → the record with its documented field names and whole values (src/ledger/model.ts).
// Every TypeScript reader of a reservation hash goes through decodeReservationHash:
//   - a value longer than 64 bytes is stored in pieces `~1:<name>`, `~2:<name>`, … (so the
//     hash stays in Redis's compact listpack encoding) and is joined here;
//   - affected_scopes, when absent, is every `/`-prefix of scope_path (src/ledger/scope.ts);
//   - budgeted, when absent, comes from `bix` (1-based positions in affected_scopes).
// Idempotent: a decoded record decodes to itself, so callers may decode defensively.

type Hash = Record<string, string>;

const CHUNK = /^~(\d+):(.+)$/s;

/** Every `/`-prefix of a scope path, shallowest first. */
export function scopePrefixes(path: string): string[] {
  const out: string[] = [];
  let i = path.indexOf('/');
  while (i >= 0) {
    out.push(path.slice(0, i));
    i = path.indexOf('/', i + 1);
  }
  out.push(path);
  return out;
}

export function decodeReservationHash(raw: Hash): Hash {
  let pieces: Map<string, string[]> | undefined;
  let out: Hash | undefined;
  for (const f in raw) {
    if (f.charCodeAt(0) !== 126) continue; // '~'
    const m = CHUNK.exec(f);
    if (!m) continue;
    pieces ??= new Map();
    const list = pieces.get(m[2]) ?? [];
    list[Number(m[1]) - 1] = raw[f];
    pieces.set(m[2], list);
  }
  if (pieces) {
    out = {};
    for (const f in raw) if (!(f.charCodeAt(0) === 126 && CHUNK.test(f))) out[f] = raw[f];
    for (const [name, list] of pieces) out[name] = list.join('');
  }
  const h = out ?? raw;
  if (h.affected_scopes === undefined && typeof h.scope_path === 'string') {
    out ??= { ...raw };
    out.affected_scopes = JSON.stringify(scopePrefixes(h.scope_path));
  }
  if (h.budgeted === undefined && typeof h.bix === 'string' && h.scope_path !== undefined) {
    out ??= { ...raw };
    const affected = JSON.parse(out.affected_scopes) as string[];
    out.budgeted = JSON.stringify(h.bix.split(',').map((i) => affected[Number(i) - 1]));
  }
  return out ?? raw;
}
