-- Exact arithmetic on non-negative integers written as decimal strings, prepended to every
-- script that compares or adds amounts. Lua numbers are doubles, exact only up to 2^53, so
-- amounts never pass through `tonumber`: they are compared and added digit by digit, and
-- Redis's own HINCRBY (exact 64-bit) makes the writes once every check has passed.

local I64_MAX = '9223372036854775807'

-- `s` if it is a canonical non-negative integer (no sign, no leading zero), else nil.
local function canonical(s)
  if type(s) == 'string' and (s == '0' or string.find(s, '^[1-9]%d*$')) then return s end
  return nil
end

-- -1, 0 or 1 as a < b, a == b, a > b (both canonical).
local function cmp(a, b)
  if #a ~= #b then return #a < #b and -1 or 1 end
  for i = 1, #a do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y and -1 or 1 end
  end
  return 0
end

-- a + b, exactly, however long.
local function add(a, b)
  local digits, carry, i, j = {}, 0, #a, #b
  while i > 0 or j > 0 or carry > 0 do
    local d = carry
    if i > 0 then d = d + string.byte(a, i) - 48 end
    if j > 0 then d = d + string.byte(b, j) - 48 end
    digits[#digits + 1] = string.char(48 + d % 10)
    carry = (d >= 10) and 1 or 0
    i, j = i - 1, j - 1
  end
  -- Canonical inputs give a canonical sum: the top digit is a carry or a nonzero digit.
  return string.reverse(table.concat(digits))
end

-- True if a canonical integer fits in a signed 64-bit integer.
local function fits(a)
  return cmp(a, I64_MAX) <= 0
end

-- The value `v` of an account's counter (as HGET or HMGET read it), checked: it must be a
-- canonical integer that fits (absent counts as 0). A corrupt value is an error before
-- anything was written.
local function checked(key, field, v)
  if not v then return '0' end
  if not canonical(v) or not fits(v) then
    return error('corrupt counter ' .. key .. ' ' .. field .. '=' .. tostring(v))
  end
  return v
end

-- An account's counter, read and checked.
local function counter(key, field)
  return checked(key, field, redis.call('HGET', key, field))
end
