-- Adds a quantity of an item to an unpaid order that has no checkout in flight. (num.lua is
-- prepended.)
--
-- KEYS[1]  the order hash
-- ARGV[1]  item id, ARGV[2] quantity, ARGV[3] quantity * price (canonical decimal strings)
--
-- Every amount stays within a signed 64-bit integer: the line's quantity and the order's
-- total are checked exactly before either is written, so a refusal changes nothing.
-- Returns {status, total}: ok (with the new total) | missing | paid | busy | overflow.
local order = KEYS[1]
local quantity = canonical(ARGV[2]) or error('bad quantity ' .. tostring(ARGV[2]))
local cost = canonical(ARGV[3]) or error('bad cost ' .. tostring(ARGV[3]))
if redis.call('EXISTS', order) == 0 then return {'missing', ''} end
local paid, checkout = unpack(redis.call('HMGET', order, 'paid', 'checkout'))
if paid == '1' then return {'paid', ''} end
if checkout then return {'busy', ''} end
local line = 'i:' .. ARGV[1]
local total = add(counter(order, 'total'), cost)
if not fits(add(counter(order, line), quantity)) or not fits(total) then
  return {'overflow', ''}
end
redis.call('HINCRBY', order, line, quantity)
redis.call('HSET', order, 'total', total)
return {'ok', total}
