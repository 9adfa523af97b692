-- Replaces orders "0".."n-1" at once (`batch_init`), unless any of them has a checkout in
-- flight: replacing such an order would let the old transaction mark the new order paid
-- without charging for it. Nothing is written when the batch is refused.
--
-- ARGV[1] n, ARGV[2] n_items, ARGV[3] n_users, ARGV[4] total cost of each order (2 * price),
-- ARGV[5] a seed for the random users and items
-- Each order gets a random user below n_users and 2 random items below n_items (the same
-- item twice makes one line of quantity 2). Keys are computed here, so one call covers any n.
-- Returns {status, id}: ok | in_use (with the first such order's id).
local n, n_items, n_users = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
for i = 0, n - 1 do
  if redis.call('HEXISTS', 'order:' .. i, 'checkout') == 1 then return {'in_use', tostring(i)} end
end
math.randomseed(tonumber(ARGV[5]))
for i = 0, n - 1 do
  local key = 'order:' .. i
  redis.call('DEL', key)
  redis.call('HSET', key, 'user', math.random(0, n_users - 1), 'paid', '0', 'total', ARGV[4])
  redis.call('HINCRBY', key, 'i:' .. math.random(0, n_items - 1), 1)
  redis.call('HINCRBY', key, 'i:' .. math.random(0, n_items - 1), 1)
end
return {'ok', ''}
