// The reservation hash as stored (src/store/lua/reservation_record.lua, docs/decisions.md
// DM1) → the record with its documented field names and whole values (src/ledger/model.ts).
// Every TypeScript reader of a reservation hash goes through decodeReservationHash:
//   - field names are stored short (STORED_NAME; DM4) and come back as documented;
//   - a value longer than 64 bytes is stored in pieces `~1:<name>`, `~2:<name>`, … (so the
//     hash stays in Redis's compact listpack encoding) and is joined here;
//   - unit and overage_policy are stored as one digit (UNIT_NAME, OVERAGE_NAME; DM7);
//   - subject, when absent, is the JSON its scope_path spells (subjectOfScope; DM6);
//   - affected_scopes, when absent, is every `/`-prefix of scope_path (src/ledger/scope.ts);
//   - budgeted, when absent, comes from `bix` (1-based positions in affected_scopes).
// Idempotent: a decoded record decodes to itself, so callers may decode defensively.

type Hash = Record<string, string>;

/** Documented field name → the name it is stored under (src/store/lua/reservation_record.lua
 *  RES_SHORT, the same table). Fields not listed keep their name: status, ev:<action>,
 *  extend_hash:<key>, extend_result:<key>, and the internal bix, rbal, fbal, exp0. */
export const STORED_NAME: Readonly<Record<string, string>> = {
  reservation_id: 'id', tenant: 't', subject: 'sj', action: 'ac', unit: 'u', estimate: 'e', scope_path: 'sp',
  affected_scopes: 'as', budgeted: 'bd', created_at_ms: 'ct', expires_at_ms: 'xt', grace_ms: 'g',
  overage_policy: 'op', idempotency_key: 'ik', extension_count: 'xc', max_extensions: 'xm', metadata: 'md',
  policy_id: 'pi', run_counters: 'rc', caps_json: 'cj', charged: 'ch', committed_at_ms: 'cat',
  committed_metrics: 'cmx', committed_metadata: 'cmd', commit_key: 'ck', commit_hash: 'chs',
  commit_result: 'cr', released_at_ms: 'rat', release_key: 'rk', release_hash: 'rhs', release_result: 'rr',
  released_by: 'rby', release_reason: 'rrs', extend_metadata: 'xmd', expired_at_ms: 'eat',
};

const DOCUMENTED_NAME: Readonly<Record<string, string>> = Object.fromEntries(Object.entries(STORED_NAME).map(([l, s]) => [s, l]));

/** The name a documented field is stored under (tests that write a record by hand). */
export const storedFieldName = (f: string): string => STORED_NAME[f] ?? f;

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

/** The subject JSON a scope path spells, levels in path order: `tenant:a/agent:b` →
 *  `{"tenant":"a","agent":"b"}` — every ':' becomes '":"', every '/' becomes '","', then
 *  '{"' … '"}' (reservation_record.lua subject_of_scope, the same replacement; DM6). A
 *  record without `subject` was written so because the request's subject was exactly
 *  this text. */
export function subjectOfScope(path: string): string {
  return `{"${path.replaceAll(':', '":"').replaceAll('/', '","')}"}`;
}

/** unit and overage_policy values as stored (one digit, DM7; reservation_record.lua
 *  unit_code / overage_code, the same tables). Other values are stored as is. */
const UNIT_NAME: Readonly<Record<string, string>> = { 1: 'USD_MICROCENTS', 2: 'TOKENS', 3: 'CREDITS', 4: 'RISK_POINTS' };
const OVERAGE_NAME: Readonly<Record<string, string>> = { 1: 'REJECT', 2: 'ALLOW_IF_AVAILABLE', 3: 'ALLOW_WITH_OVERDRAFT' };

export function decodeReservationHash(raw: Hash): Hash {
  let pieces: Map<string, string[]> | undefined;
  const out: Hash = {};
  const short = new Set<string>(); // documented names read under their short name
  for (const f in raw) {
    if (f.charCodeAt(0) === 126) { // '~<k>:<stored name>'
      const m = CHUNK.exec(f);
      if (m) {
        const name = DOCUMENTED_NAME[m[2]] ?? m[2];
        pieces ??= new Map();
        const list = pieces.get(name) ?? [];
        list[Number(m[1]) - 1] = raw[f];
        pieces.set(name, list);
        continue;
      }
    }
    const name = DOCUMENTED_NAME[f];
    if (name !== undefined) {
      out[name] = raw[f];
      short.add(name);
    } else if (!(STORED_NAME[f] !== undefined && short.has(f))) {
      out[f] = raw[f]; // unmapped, or the long name of a mapped field (older layout)
    }
  }
  if (pieces) for (const [name, list] of pieces) out[name] = list.join('');
  if (out.unit !== undefined) out.unit = UNIT_NAME[out.unit] ?? out.unit;
  if (out.overage_policy !== undefined) out.overage_policy = OVERAGE_NAME[out.overage_policy] ?? out.overage_policy;
  if (out.subject === undefined && typeof out.scope_path === 'string') out.subject = subjectOfScope(out.scope_path);
  if (out.affected_scopes === undefined && typeof out.scope_path === 'string') {
    out.affected_scopes = JSON.stringify(scopePrefixes(out.scope_path));
  }
  if (out.budgeted === undefined && typeof out.bix === 'string') {
    const affected = JSON.parse(out.affected_scopes ?? '[]') as string[];
    out.budgeted = JSON.stringify(out.bix.split(',').map((i) => affected[Number(i) - 1]));
  }
  return out;
}
