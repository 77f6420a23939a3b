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
  local args = {}
  local del = nil
  local prev_st = prev and prev.__st or {}
  if not stored then RES_SHORT = RES_SHORT or res_short_names() end
  for i = 1, #flat, 2 do
    local f, v = flat[i], flat[i + 1]
    local sf = stored and f or (RES_SHORT[f] or f)
    local n = 0
    if #v > RES_CHUNK and #v <= CHUNK_MAX then
      local k = 0
      for s = 1, #v, RES_CHUNK do
        k = k + 1
        args[#args + 1] = '~' .. k .. ':' .. sf
        args[#args + 1] = string.sub(v, s, s + RES_CHUNK - 1)
      end
      n = k
    else
      args[#args + 1] = sf
      args[#args + 1] = v
    end
    local old = prev_st[f]
    if old == 'long' then
      del = del or {}; del[#del + 1] = f
    elseif old == 'plain' and n > 0 then
      del = del or {}; del[#del + 1] = sf
    elseif type(old) == 'number' and old > n then
      del = del or {}
      for k = n + 1, old do del[#del + 1] = '~' .. k .. ':' .. sf end
    end
  end
  if del then redis.call('HDEL', key, unpack(del)) end
  redis.call('HSET', key, unpack(args))
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
  for i, s in ipairs(scopes) do pos[s] = i end
  local ix = {}
  for i, s in ipairs(budgeted_scopes) do
    if not pos[s] then ix = nil; break end
    ix[i] = tostring(pos[s])
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
local BAL_PACKED = {'allocated', 'remaining', 'reserved', 'spent', 'debt', 'overdraft_limit', 'is_over_limit', 'status'}
local function bal_pack(snaps, scopes, unit)
  local pos = {}
  for i, s in ipairs(scopes) do pos[s] = i end
  local rows = {}
  for _, s in ipairs(snaps) do
    local i = pos[s.scope]
    if not i or s.unit ~= unit then return nil end
    local row = {tostring(i)}
    for _, f in ipairs(BAL_PACKED) do
      local v = s[f]
      if v == false then
        row[#row + 1] = '~'
      elseif type(v) ~= 'string' or v == '' or v == '~' or string.find(v, '[,;]') then
        return nil
      else
        row[#row + 1] = v
      end
    end
    rows[#rows + 1] = table.concat(row, ',')
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
