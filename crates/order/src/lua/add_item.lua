-- Adds a quantity of an item to an unpaid order that has no checkout in flight.
-- KEYS[1] order hash; ARGV[1] item id, ARGV[2] quantity, ARGV[3] quantity * price
-- Returns {status}: ok | not_found | paid | busy | overflow.
local order = KEYS[1]
if redis.call('EXISTS', order) == 0 then return {'not_found'} end
local paid, checkout = unpack(redis.call('HMGET', order, 'paid', 'checkout'))
if paid == '1' then return {'paid'} end
if checkout then return {'busy'} end
local line = 'i:' .. ARGV[1]
if not pcall(redis.call, 'HINCRBY', order, line, ARGV[2]) then return {'overflow'} end
if not pcall(redis.call, 'HINCRBY', order, 'total', ARGV[3]) then
  redis.call('HINCRBY', order, line, '-' .. ARGV[2])
  if redis.call('HGET', order, line) == '0' then redis.call('HDEL', order, line) end
  return {'overflow'}
end
return {'ok'}
