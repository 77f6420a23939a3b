-- reservation_record.lua: how a reservation hash is laid out in Redis (docs/decisions.md
-- DM1–DM4; src/ledger/reservationRecord.ts is the TypeScript reader of the same layout).
-- Library only: local definitions, no top-level code. Include after ledger_common.lua.
--
-- Compact on a stock Redis: a hash stays in the listpack encoding (one allocation, no
-- per-field dictionary entries: about 1/3 of the memory) only while every field name and
-- value is at most hash-max-listpack-value (64) bytes and it has at most
-- hash-max-listpack-entries (128) fields. So:
--   * a value longer than 64 bytes (JSON of subject, action, metadata, metrics, a long
--     scope path, …) is stored in pieces of 64 bytes under `~1:<name>`, `~2:<name>`, …
--     (<name> = the stored name) and `<name>` itself is absent (a reader that does not know the layout sees the field
--     missing, never a truncated value). Values above CHUNK_MAX are stored whole (the hash
--     converts; such a value dominates the record anyway).
--   * field names are short (RES_SHORT below; DM4): names are a third of a small record.
--   * derivable values are not stored: affected_scopes (every `/`-prefix of scope_path,
--     src/ledger/scope.ts) and budgeted (stored as `bix`, 1-based positions in
--     affected_scopes). A record whose values are not derivable keeps the JSON fields.
--   * replay results are rebuilt from the record (DM2, DM3) instead of copied: `rbal` holds
--     the Balance rows of the reserve response and `fbal` those of the commit / release
--     response, packed by bal_pack below.
-- res_read returns the record with the documented field names and whole values, whichever
-- way it was stored, so the scripts use r.subject, r.budgeted (JSON text), … as before;
-- res_write stores documented names the compact way.

local RES_CHUNK = 64
local CHUNK_MAX = 1024

-- Decimal text of a small positive integer. tostring(n) formats a Lua number through
-- '%.14g' (the C library's float printer: ~2,400 instructions in Redis); positions are
-- small, so a constant table serves them.
local IX = {'1', '2', '3', '4', '5', '6', '7', '8', '9', '10', '11', '12', '13', '14', '15', '16'}
local function ix_str(i) return IX[i] or string.format('%d', i) end

-- Every `/`-prefix of a scope path, shallowest first (src/ledger/scope.ts deriveScopes).
local function scope_prefixes(path)
  local out = {}
  local start = 1
  while true do
    local i = string.find(path, '/', start, true)
    if not i then break end
    out[#out + 1] = string.sub(path, 1, i - 1)
    start = i + 1
  end
  out[#out + 1] = path
  return out
end

-- The subject JSON a scope path spells, levels in path order: tenant:a/agent:b →
-- {"tenant":"a","agent":"b"} (every ':' → '":"', every '/' → '","', then '{"' … '"}';
-- DM6). A new record leaves `subject` out when the request's subject is exactly this text
-- (the common case: lower-case values, canonical order, no dimensions); readers rebuild it
-- from scope_path (reservationRecord.ts subjectOfScope, the same replacement). Scope values never need JSON escaping (src/ledger/scope.ts charset),
-- and the writer compares bytes, so a rebuilt subject is always the one sent.
local function subject_of_scope(path)
  return '{"' .. string.gsub(string.gsub(path, ':', '":"'), '/', '","') .. '"}'
end

-- unit and overage_policy values are stored as one digit (DM7): the enums of the runtime
-- spec (UnitEnum, CommitOveragePolicy), which never are digits themselves; any other value
-- is stored as is. Idempotent both ways. reservationRecord.ts has the same tables.
local function unit_code(v)
  if v == 'USD_MICROCENTS' then return '1' elseif v == 'TOKENS' then return '2'
  elseif v == 'CREDITS' then return '3' elseif v == 'RISK_POINTS' then return '4' end
  return v
end
local function unit_name(v)
  if v == '1' then return 'USD_MICROCENTS' elseif v == '2' then return 'TOKENS'
  elseif v == '3' then return 'CREDITS' elseif v == '4' then return 'RISK_POINTS' end
  return v
end
local function overage_code(v)
  if v == 'ALLOW_IF_AVAILABLE' then return '2' elseif v == 'REJECT' then return '1'
  elseif v == 'ALLOW_WITH_OVERDRAFT' then return '3' end
  return v
end
local function overage_name(v)
  if v == '2' then return 'ALLOW_IF_AVAILABLE' elseif v == '1' then return 'REJECT'
  elseif v == '3' then return 'ALLOW_WITH_OVERDRAFT' end
  return v
end

-- Stored (short) name of each documented field (DM4); fields not listed keep their name
-- (status, ev:<action>, extend_hash:<key>, extend_result:<key>, bix, rbal, fbal, exp0).
-- Built on first use (a script's top level runs on every call; reserve.lua writes stored
-- names directly and never builds them).
local function res_short_names() return {
  reservation_id = 'id', tenant = 't', subject = 'sj', action = 'ac', unit = 'u', estimate = 'e',
  scope_path = 'sp', affected_scopes = 'as', budgeted = 'bd', created_at_ms = 'ct',
  expires_at_ms = 'xt', grace_ms = 'g', overage_policy = 'op', idempotency_key = 'ik',
  extension_count = 'xc', max_extensions = 'xm', metadata = 'md', policy_id = 'pi',
  run_counters = 'rc', caps_json = 'cj', charged = 'ch', committed_at_ms = 'cat',
  committed_metrics = 'cmx', committed_metadata = 'cmd', commit_key = 'ck', commit_hash = 'chs',
  commit_result = 'cr', released_at_ms = 'rat', release_key = 'rk', release_hash = 'rhs',
  release_result = 'rr', released_by = 'rby', release_reason = 'rrs', extend_metadata = 'xmd',
  expired_at_ms = 'eat',
} end
local function res_long_names() return {
  id = 'reservation_id', t = 'tenant', sj = 'subject', ac = 'action', u = 'unit', e = 'estimate',
  sp = 'scope_path', as = 'affected_scopes', bd = 'budgeted', ct = 'created_at_ms',
  xt = 'expires_at_ms', g = 'grace_ms', op = 'overage_policy', ik = 'idempotency_key',
  xc = 'extension_count', xm = 'max_extensions', md = 'metadata', pi = 'policy_id',
  rc = 'run_counters', cj = 'caps_json', ch = 'charged', cat = 'committed_at_ms',
  cmx = 'committed_metrics', cmd = 'committed_metadata', ck = 'commit_key', chs = 'commit_hash',
  cr = 'commit_result', rat = 'released_at_ms', rk = 'release_key', rhs = 'release_hash',
  rr = 'release_result', rby = 'released_by', rrs = 'release_reason', xmd = 'extend_metadata',
  eat = 'expired_at_ms',
} end
local RES_SHORT, RES_LONG = nil, nil

-- HGETALL of a reservation hash → table with the documented (long) names and whole values
-- (nil when the key is missing). Accepts every layout: short names, pieces, and records
-- written whole with long names (older records, test seeds); a short name wins over its
-- long one. r.__st[name] = how the value is stored ('plain', 'long' or the number of
-- pieces), for res_write's cleanup of the previous form.
local function res_read(key)
  local flat = redis.call('HGETALL', key)
  if #flat == 0 then return nil end
  RES_SHORT = RES_SHORT or res_short_names()
  RES_LONG = RES_LONG or res_long_names()
  local t = {}
  local st = {}
  local pieces = nil
  for i = 1, #flat, 2 do
    local f = flat[i]
    if string.byte(f, 1) == 126 then -- '~<k>:<stored name>'
      local c = string.find(f, ':', 2, true)
      local k = c and tonumber(string.sub(f, 2, c - 1))
      if k then
        pieces = pieces or {}
        local sname = string.sub(f, c + 1)
        local name = RES_LONG[sname] or sname
        local p = pieces[name]
        if not p then p = {}; pieces[name] = p end
        p[k] = flat[i + 1]
      else
        t[f] = flat[i + 1]
      end
    else
      local name = RES_LONG[f]
      if name then
        t[name] = flat[i + 1]
        st[name] = 'plain'
      elseif RES_SHORT[f] then -- long name of a mapped field (older layout)
        if st[f] == nil then t[f] = flat[i + 1]; st[f] = 'long' end
      else
        t[f] = flat[i + 1]
        st[f] = 'plain'
      end
    end
  end
  if pieces then
    for name, p in pairs(pieces) do
      st[name] = #p
      t[name] = table.concat(p)
    end
  end
  t.__st = st
  if t.unit then t.unit = unit_name(t.unit) end
  if t.overage_policy then t.overage_policy = overage_name(t.overage_policy) end
  if t.subject == nil and t.scope_path then t.subject = subject_of_scope(t.scope_path) end
  if t.affected_scopes == nil and t.scope_path then
    t.affected_list = scope_prefixes(t.scope_path)
    t.affected_scopes = cjson.encode(t.affected_list)
  end
  if t.budgeted == nil and t.bix then
    local aff = t.affected_list or cjson.decode(t.affected_scopes)
    local b = {}
    for ix in string.gmatch(t.bix, '%d+') do b[#b + 1] = aff[tonumber(ix)] end
    t.budgeted_list = b
    t.budgeted = cjson.encode(b)
  end
  return t
end

-- HSET of documented name/value pairs (a flat array) under their stored names, long values
-- in pieces. `prev`: the record as res_read returned it (nil for a new one): the previous
-- form of a rewritten field (long name, plain value, surplus pieces) is deleted.
-- `stored`: the names in `flat` are already the stored names (reserve.lua's new record).
local function res_write(key, flat, prev, stored)
  local nf = #flat
  if stored and not prev then
    -- a new record under its stored names (reserve.lua): the subject is left out when its
    -- scope path spells it (DM6; removed from `flat` itself), and the rest goes to HSET as
    -- is unless a value needs pieces
    local long = false
    local isj, sp = nil, nil
    for i = 1, nf, 2 do
      local f = flat[i]
      if f == 'sj' then isj = i elseif f == 'sp' then sp = flat[i + 1]
      elseif f == 'u' then flat[i + 1] = unit_code(flat[i + 1])
      elseif f == 'op' then flat[i + 1] = overage_code(flat[i + 1]) end
      if #flat[i + 1] > RES_CHUNK then long = true end
    end
    if isj and sp and flat[isj + 1] == subject_of_scope(sp) then
      -- the last pair takes its place (field order does not matter to a hash)
      flat[isj], flat[isj + 1] = flat[nf - 1], flat[nf]
      flat[nf - 1], flat[nf] = nil, nil
      nf = nf - 2
      if long then
        long = false
        for i = 2, nf, 2 do if #flat[i] > RES_CHUNK then long = true; break end end
      end
    end
    if not long then
      redis.call('HSET', key, unpack(flat))
      return
    end
  end
  local args = {'HSET', key}
  local na = 2 -- #args, kept by hand (the # operator searches the table each time)
  local del = nil
  local prev_st = prev and prev.__st or {}
  if not stored then RES_SHORT = RES_SHORT or res_short_names() end
  for i = 1, nf, 2 do
    local f, v = flat[i], flat[i + 1]
    local sf = stored and f or (RES_SHORT[f] or f)
    if sf == 'u' then v = unit_code(v) elseif sf == 'op' then v = overage_code(v) end
    local n = 0
    local lv = #v
    if lv > RES_CHUNK and lv <= CHUNK_MAX then
      local k = 0
      local suffix = ':' .. sf
      for s = 1, lv, RES_CHUNK do
        k = k + 1
        args[na + 1] = '~' .. IX[k] .. suffix -- k <= CHUNK_MAX / RES_CHUNK = 16
        args[na + 2] = string.sub(v, s, s + RES_CHUNK - 1)
        na = na + 2
      end
      n = k
    else
      args[na + 1] = sf
      args[na + 2] = v
      na = na + 2
    end
    local old = prev_st[f]
    if old == 'long' then
      del = del or {}; del[#del + 1] = f
    elseif old == 'plain' and n > 0 then
      del = del or {}; del[#del + 1] = sf
    elseif type(old) == 'number' and old > n then
      del = del or {}
      for k = n + 1, old do del[#del + 1] = '~' .. ix_str(k) .. ':' .. sf end
    end
  end
  if del then redis.call('HDEL', key, unpack(del)) end
  redis.call(unpack(args))
end

-- The reserve's scope fields (stored names, for res_write(…, true)): nothing when affected_scopes is the prefix chain of
-- scope_path and every budgeted scope is one of them (then `bix` lists their positions),
-- else the JSON fields as they were always stored.
local function scope_fields(fields, scope_path, scopes, budgeted_scopes)
  local derived = scope_prefixes(scope_path)
  local same = #derived == #scopes
  if same then
    for i = 1, #scopes do if scopes[i] ~= derived[i] then same = false; break end end
  end
  local pos = {}
  for i = 1, #scopes do pos[scopes[i]] = i end
  local ix = {}
  for i = 1, #budgeted_scopes do
    local at = pos[budgeted_scopes[i]]
    if not at then ix = nil; break end
    ix[i] = ix_str(at)
  end
  if same and ix then
    fields[#fields + 1] = 'bix'; fields[#fields + 1] = table.concat(ix, ',')
  else
    fields[#fields + 1] = 'as'; fields[#fields + 1] = cjson.encode(scopes) -- affected_scopes
    fields[#fields + 1] = 'bd'; fields[#fields + 1] = cjson.encode(budgeted_scopes) -- budgeted
  end
end

-- Balance rows (snapshot tables in BUDGET_SNAPSHOT_FIELDS shape) packed as
-- `<i>,<allocated>,<remaining>,<reserved>,<spent>,<debt>,<overdraft_limit>,<is_over_limit>,<status>`
-- per row, rows joined by ';', i = position of the row's scope in `scopes`, a missing
-- field (false) as '~'. nil when a row cannot be packed losslessly (a scope outside
-- `scopes`, another unit, a value that is empty, '~' or contains ',' or ';'): the caller
-- then stores the whole result as before.
-- Written field by field (no loop over the names, no pattern match per value: this runs on
-- every reserve / commit / release): cell() maps a value to its packed text or nil, and
-- the values of a row are searched for ',' and ';' once, together.
local BAL_PACKED = {'allocated', 'remaining', 'reserved', 'spent', 'debt', 'overdraft_limit', 'is_over_limit', 'status'}
local function cell(v)
  if v == false then return '~' end
  if type(v) ~= 'string' or v == '' or v == '~' then return nil end
  return v
end
local function bal_pack(snaps, scopes, unit)
  local pos = {}
  for i = 1, #scopes do pos[scopes[i]] = i end
  local rows = {}
  for r = 1, #snaps do
    local s = snaps[r]
    local i = pos[s.scope]
    if not i or s.unit ~= unit then return nil end
    local a, m, rs, sp = cell(s.allocated), cell(s.remaining), cell(s.reserved), cell(s.spent)
    local d, ol, io, st = cell(s.debt), cell(s.overdraft_limit), cell(s.is_over_limit), cell(s.status)
    if not (a and m and rs and sp and d and ol and io and st) then return nil end
    local vals = a .. m .. rs .. sp .. d .. ol .. io .. st
    if string.find(vals, ',', 1, true) or string.find(vals, ';', 1, true) then return nil end
    rows[r] = ix_str(i) .. ',' .. a .. ',' .. m .. ',' .. rs .. ',' .. sp .. ',' .. d .. ',' .. ol .. ',' .. io .. ',' .. st
  end
  return table.concat(rows, ';')
end

-- Inverse of bal_pack: the snapshot tables, keys inserted in BUDGET_SNAPSHOT_FIELDS order
-- as budget_snapshot builds them.
local function bal_unpack(packed, scopes, unit)
  local out = {}
  for row in string.gmatch(packed, '[^;]+') do
    local v = {}
    for x in string.gmatch(row, '[^,]+') do v[#v + 1] = x end
    local t = {}
    t.scope = scopes[tonumber(v[1])]
    t.unit = unit
    for j, f in ipairs(BAL_PACKED) do
      local x = v[j + 1]
      if x == '~' then x = false end
      t[f] = x
    end
    out[#out + 1] = t
  end
  return out
end

-- The list of budgeted scopes of a record from res_read (nil when unreadable).
local function res_budgeted(r)
  if r.budgeted_list then return r.budgeted_list end
  if not r.budgeted or r.budgeted == '' then return nil end
  local ok, v = pcall(cjson.decode, r.budgeted)
  if not ok or type(v) ~= 'table' then return nil end
  return v
end

-- The stored result of a live reserve (reserve.lua base_result + reservation fields),
-- rebuilt from its record: decision and caps from caps_json, the expiry the reserve set
-- (`exp0` once extend moved it), the Balance rows of the reserve from `rbal` (DM2).
local function reserve_result_of(r)
  local caps = r.caps_json or ''
  local res = {
    decision = (caps ~= '') and 'ALLOW_WITH_CAPS' or 'ALLOW', mode = 'live', unit = r.unit, estimate = r.estimate,
    scope_path = r.scope_path, affected_scopes = r.affected_list or cjson.decode(r.affected_scopes),
  }
  if caps ~= '' then res.caps_json = caps end
  res.reservation_id = r.reservation_id
  res.expires_at_ms = r.exp0 or r.expires_at_ms
  res.balances = bal_unpack(r.rbal, res_budgeted(r) or {}, r.unit)
  return res
end

-- The stored result of a commit (commit.lua), fresh and rebuilt alike (DM3).
local function commit_result_of(r, charged, balances)
  local result = {
    status = 'COMMITTED',
    reservation_id = r.reservation_id,
    unit = r.unit,
    estimate = r.estimate,
    charged = charged,
    balances = balances,
  }
  if i64_cmp(charged, r.estimate) < 0 then result.released = i64_sub(r.estimate, charged) end
  return result
end

-- The stored result of a release (release.lua), fresh and rebuilt alike (DM3).
local function release_result_of(r, balances)
  return {
    status = 'RELEASED',
    reservation_id = r.reservation_id,
    unit = r.unit,
    released = r.estimate,
    balances = balances,
  }
end
