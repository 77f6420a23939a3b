-- int64.lua: exact signed 64-bit integer arithmetic on decimal strings.
--
-- Why: Redis Lua numbers are doubles, exact only up to 2^53. Budget amounts
-- are int64, so every amount is kept as a decimal string and combined
-- digit-wise here. Results are never wrapped or rounded: add/sub return nil
-- when the true result falls outside int64.
--
-- This file is a library that is textually prepended to other scripts, so it
-- contains only `local function` / `local` definitions (no top-level return,
-- no KEYS/ARGV). Helpers prefixed `i64__` are internal.
--
-- Canonical form (what i64_norm returns and what the arithmetic functions
-- accept): optional '-', then "0" or a digit string without leading zeros;
-- "-0" is not canonical. Passing a non-canonical value to the arithmetic
-- functions raises a script error (fail loudly rather than compute garbage).

local I64_MAX_MAG = "9223372036854775807" -- 2^63 - 1
local I64_MIN_MAG = "9223372036854775808" -- |-2^63|

-- Compare two digit strings without leading zeros: -1/0/1.
-- Byte-wise on purpose: Lua's `<` on strings uses strcoll (locale dependent).
local function i64__mag_cmp(a, b)
  if #a ~= #b then return (#a < #b) and -1 or 1 end
  for i = 1, #a do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return (x < y) and -1 or 1 end
  end
  return 0
end

-- Validate a decimal integer string; return its canonical form or nil.
-- Accepts the JSON integer grammar -?(0|[1-9][0-9]*); "-0" becomes "0".
-- Rejects "+1", "01", "1.0", "1e3", "", whitespace and anything outside int64.
local function i64_norm(s)
  if type(s) ~= "string" or not string.find(s, "^%-?%d+$") then return nil end
  -- no captures and no concatenation: a canonical input is returned as is (no new string)
  local first = (string.byte(s, 1) == 45) and 2 or 1 -- '-'
  local n = #s - first + 1
  if string.byte(s, first) == 48 then -- '0'
    if n == 1 then return "0" end -- "0" and "-0"
    return nil -- leading zero
  end
  if n >= 19 then
    local limit = (first == 2) and I64_MIN_MAG or I64_MAX_MAG
    if i64__mag_cmp(string.sub(s, first), limit) > 0 then return nil end
  end
  return s
end

-- Canonical check for operands: error (never guess) on anything else.
local function i64__check(s)
  if i64_norm(s) ~= s then
    error("i64: not a canonical int64 string: " .. tostring(s))
  end
end

-- Split a canonical value into (is_negative, magnitude); error if not canonical.
local function i64__split(s)
  i64__check(s)
  if string.byte(s, 1) == 45 then return true, string.sub(s, 2) end -- '-'
  return false, s
end

-- Exact arithmetic on two base-10^9 limbs held in Lua numbers: a canonical value is
-- hi * 10^9 + lo with |hi| < 10^10 and |lo| < 10^9, both carrying the value's sign.
-- Every intermediate stays far below 2^53, so double arithmetic is exact, and a sum
-- costs a few dozen VM instructions instead of a digit-by-digit loop over strings.
local I64__LIMB = 1000000000
local I64__HI_MAX = 9223372036 -- (2^63 - 1) div 10^9
local I64__LO_MAX = 854775807  -- (2^63 - 1) mod 10^9; |-2^63| has lo 854775808

local function i64__limbs(s)
  local neg = string.byte(s, 1) == 45 -- '-'
  local mag = neg and string.sub(s, 2) or s
  local n = #mag
  local hi, lo = 0, tonumber(mag)
  if n > 9 then
    hi = tonumber(string.sub(mag, 1, n - 9))
    lo = tonumber(string.sub(mag, n - 8))
  end
  if neg then return -hi, -lo end
  return hi, lo
end

-- Canonical text of hi * 10^9 + lo (limbs of any signs, |lo| < 2 * 10^9), or nil when
-- the value is outside int64.
local function i64__from_limbs(hi, lo)
  if lo >= I64__LIMB then hi = hi + 1; lo = lo - I64__LIMB
  elseif lo <= -I64__LIMB then hi = hi - 1; lo = lo + I64__LIMB end
  if hi > 0 and lo < 0 then hi = hi - 1; lo = lo + I64__LIMB
  elseif hi < 0 and lo > 0 then hi = hi + 1; lo = lo - I64__LIMB end
  local ahi, alo = math.abs(hi), math.abs(lo)
  if ahi > I64__HI_MAX then return nil end
  if ahi == I64__HI_MAX then
    local neg = hi < 0 or (hi == 0 and lo < 0)
    if alo > (neg and I64__LO_MAX + 1 or I64__LO_MAX) then return nil end
  end
  if hi == 0 then
    if lo == 0 then return "0" end -- never "-0"
    return string.format("%d", lo)
  end
  return string.format("%d%09d", hi, alo)
end

-- Signed a + b (or a - b when negate_b). Returns the canonical result, or nil if it
-- does not fit in int64. Operands of at most 15 characters (|v| < 10^15) are added as
-- plain numbers (the result is below 2^53, exact); longer ones on limbs.
local function i64__add(a, b, negate_b)
  i64__check(a)
  i64__check(b)
  if #a <= 15 and #b <= 15 then
    local x, y = tonumber(a), tonumber(b)
    local r = negate_b and (x - y) or (x + y)
    if r == 0 then return "0" end
    return string.format("%d", r)
  end
  local ha, la = i64__limbs(a)
  local hb, lb = i64__limbs(b)
  if negate_b then hb, lb = -hb, -lb end
  return i64__from_limbs(ha + hb, la + lb)
end

-- a + b, or nil on int64 overflow.
local function i64_add(a, b) return i64__add(a, b, false) end

-- a - b, or nil on int64 overflow.
local function i64_sub(a, b) return i64__add(a, b, true) end

-- Compare: -1 if a < b, 0 if equal, 1 if a > b.
local function i64_cmp(a, b)
  i64__check(a)
  i64__check(b)
  if #a <= 15 and #b <= 15 then
    local x, y = tonumber(a), tonumber(b)
    if x < y then return -1 elseif x > y then return 1 end
    return 0
  end
  local na, ma = i64__split(a)
  local nb, mb = i64__split(b)
  if na ~= nb then return na and -1 or 1 end
  local c = i64__mag_cmp(ma, mb)
  if na then return -c end
  return c
end

local function i64_min(a, b)
  if i64_cmp(a, b) <= 0 then return a end
  return b
end

local function i64_max(a, b)
  if i64_cmp(a, b) >= 0 then return a end
  return b
end

-- Strictly negative (< 0).
local function i64_is_neg(a)
  i64__check(a)
  return string.byte(a, 1) == 45
end

-- Strictly positive (> 0).
local function i64_is_pos(a)
  i64__check(a)
  return string.byte(a, 1) ~= 45 and a ~= "0"
end
