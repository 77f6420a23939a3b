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
  if type(s) ~= "string" then return nil end
  local sign, mag = string.match(s, "^(%-?)(%d+)$")
  if not mag then return nil end
  if #mag > 1 and string.byte(mag, 1) == 48 then return nil end -- leading zero
  if mag == "0" then return "0" end
  if #mag >= 19 then
    local limit = (sign == "-") and I64_MIN_MAG or I64_MAX_MAG
    if i64__mag_cmp(mag, limit) > 0 then return nil end
  end
  return sign .. mag
end

-- Split a canonical value into (is_negative, magnitude); error if not canonical.
local function i64__split(s)
  if i64_norm(s) ~= s then
    error("i64: not a canonical int64 string: " .. tostring(s))
  end
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
-- does not fit in int64.
local function i64__add(a, b, negate_b)
  if i64_norm(a) ~= a then error("i64: not a canonical int64 string: " .. tostring(a)) end
  if i64_norm(b) ~= b then error("i64: not a canonical int64 string: " .. tostring(b)) end
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
  local neg = i64__split(a)
  return neg
end

-- Strictly positive (> 0).
local function i64_is_pos(a)
  local neg = i64__split(a)
  return (not neg) and a ~= "0"
end
