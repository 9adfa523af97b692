-- A direct change of one account (stock add/subtract, payment add_funds/pay).
--
-- KEYS[1]  the account hash
-- ARGV[1]  the field (stock | credit)
-- ARGV[2]  the signed delta as a decimal string
-- Returns {status, value}: status is ok | not_found | too_little | overflow, and value is the
-- field after the change (a string, so 64-bit values stay exact).
local key, field, delta = KEYS[1], ARGV[1], ARGV[2]
if redis.call('EXISTS', key) == 0 then return {'not_found', ''} end
local ok, left = pcall(redis.call, 'HINCRBY', key, field, delta)
if not ok then return {'overflow', redis.call('HGET', key, field)} end
if left < 0 then
  redis.call('HINCRBY', key, field, string.sub(delta, 2))
  return {'too_little', redis.call('HGET', key, field)}
end
return {'ok', redis.call('HGET', key, field)}
