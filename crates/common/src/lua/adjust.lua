-- A direct change of one account (stock add/subtract, payment add_funds/pay). (num.lua is
-- prepended.)
--
-- KEYS[1]  the account hash
-- ARGV[1]  the field (stock | credit)
-- ARGV[2]  '+' to add, '-' to take away
-- ARGV[3]  the amount, a canonical decimal string
--
-- Keeps the ledger's invariant (see step.lua): available >= 0, held >= 0 and
-- available + held <= i64::MAX; a change that would break it is refused and writes nothing.
-- Returns {status, value}: status is ok | missing | short | overflow, and value is the field
-- after the change (a string, so 64-bit values stay exact).
local key, field, sign = KEYS[1], ARGV[1], ARGV[2]
local amount = canonical(ARGV[3]) or error('bad amount ' .. tostring(ARGV[3]))
if redis.call('EXISTS', key) == 0 then return {'missing', ''} end
local have, held = counter(key, field), counter(key, 'held')
if sign == '+' then
  if not fits(add(add(have, amount), held)) then return {'overflow', have} end
  redis.call('HINCRBY', key, field, amount)
elseif sign == '-' then
  if cmp(have, amount) < 0 then return {'short', have} end
  if amount ~= '0' then redis.call('HINCRBY', key, field, '-' .. amount) end  -- Redis refuses '-0'
else
  return error('bad sign ' .. tostring(sign))
end
-- Read back as a string: HINCRBY's reply reaches Lua as a double.
return {'ok', redis.call('HGET', key, field)}
