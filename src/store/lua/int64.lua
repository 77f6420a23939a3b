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

-- Sum of two magnitudes, schoolbook addition from the least significant digit.
local function i64__mag_add(a, b)
  local out, carry = {}, 0
  local i, j = #a, #b
  while i > 0 or j > 0 or carry > 0 do
    local d = carry
    if i > 0 then d = d + string.byte(a, i) - 48; i = i - 1 end
    if j > 0 then d = d + string.byte(b, j) - 48; j = j - 1 end
    if d >= 10 then d = d - 10; carry = 1 else carry = 0 end
    out[#out + 1] = d
  end
  return string.reverse(table.concat(out))
end

-- Difference of two magnitudes, requires a >= b. Strips leading zeros.
local function i64__mag_sub(a, b)
  local out, borrow = {}, 0
  local j = #b
  for i = #a, 1, -1 do
    local d = string.byte(a, i) - 48 - borrow
    if j > 0 then d = d - (string.byte(b, j) - 48); j = j - 1 end
    if d < 0 then d = d + 10; borrow = 1 else borrow = 0 end
    out[#out + 1] = d
  end
  local r = string.gsub(string.reverse(table.concat(out)), "^0+", "")
  if r == "" then return "0" end
  return r
end

-- Signed a + b (or a - b when negate_b) via digit arithmetic only.
-- Returns the canonical result, or nil if it does not fit in int64.
local function i64__add_digits(a, b, negate_b)
  local na, ma = i64__split(a)
  local nb, mb = i64__split(b)
  if negate_b then nb = not nb end
  local neg, mag
  if na == nb then
    neg, mag = na, i64__mag_add(ma, mb)
  else
    local c = i64__mag_cmp(ma, mb)
    if c == 0 then return "0" end
    if c > 0 then neg, mag = na, i64__mag_sub(ma, mb)
    else neg, mag = nb, i64__mag_sub(mb, ma) end
  end
  if mag == "0" then return "0" end
  if i64__mag_cmp(mag, neg and I64_MIN_MAG or I64_MAX_MAG) > 0 then return nil end
  return neg and ("-" .. mag) or mag
end

-- Fast path: with at most 15 characters each, |a|,|b| < 10^15, so the double
-- result (< 2*10^15 < 2^53) is exact. "%.0f" prints that integer exactly;
-- -0 cannot occur because canonical inputs never parse to -0.
local function i64__add(a, b, negate_b)
  if #a <= 15 and #b <= 15 and i64_norm(a) == a and i64_norm(b) == b then
    local x, y = tonumber(a), tonumber(b)
    if negate_b then y = -y end
    return string.format("%.0f", x + y)
  end
  return i64__add_digits(a, b, negate_b)
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
