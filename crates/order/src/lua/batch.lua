-- Replaces orders "0".."n-1" (`batch_init`) in chunks, so that Redis answers everyone else
-- between them even for millions of orders. A batch first takes the batch lock (a hash:
-- token, n), which it gets only while no checkout of an order it replaces is in flight, and
-- which makes `begin.lua` refuse new checkouts of those orders until the batch ends:
-- replacing an order under a running checkout would let the old transaction mark the new
-- order paid without charging for it. Other orders (created one by one, with uuid ids) check
-- out as usual meanwhile. Each chunk checks and renews the lock; a batch whose caller died
-- leaves it to expire.
--
-- KEYS[1] the batch lock, KEYS[2] the active set (txs:active)
-- ARGV[1] step: begin | chunk | end, ARGV[2] the batch's token, ARGV[3] lock ms
-- begin: ARGV[4] n
-- chunk: ARGV[4] first order, ARGV[5] after the last, ARGV[6] n_items, ARGV[7] n_users,
-- ARGV[8] total cost of each order (2 * price), ARGV[9] a seed for the random users and items
-- Each order gets a random user below n_users and 2 random items below n_items (the same
-- item twice makes one line of quantity 2). Keys are computed here.
-- Returns {status, id}: ok | in_use (begin: with the order of a checkout in flight, '' when
-- another batch holds the lock) | lost (the lock expired or another batch took it).
local lock, active = KEYS[1], KEYS[2]
local step, token = ARGV[1], ARGV[2]
if step == 'begin' then
  local holder = redis.call('HGET', lock, 'token')
  if holder and holder ~= token then return {'in_use', ''} end
  local n = tonumber(ARGV[4])
  for _, tx in ipairs(redis.call('ZRANGE', active, 0, -1)) do
    local order = redis.call('HGET', 'tx:' .. tx, 'order') or ''
    local i = tonumber(order)
    if i and tostring(i) == order and i < n then return {'in_use', order} end
  end
  redis.call('HSET', lock, 'token', token, 'n', n)
  redis.call('PEXPIRE', lock, ARGV[3])
  return {'ok', ''}
end
if redis.call('HGET', lock, 'token') ~= token then return {'lost', ''} end
if step == 'end' then
  redis.call('DEL', lock)
  return {'ok', ''}
end
redis.call('PEXPIRE', lock, ARGV[3])
local n_items, n_users = tonumber(ARGV[6]), tonumber(ARGV[7])
math.randomseed(tonumber(ARGV[9]))
for i = tonumber(ARGV[4]), tonumber(ARGV[5]) - 1 do
  local key = 'order:' .. i
  redis.call('DEL', key)
  redis.call('HSET', key, 'user', math.random(0, n_users - 1), 'paid', '0', 'total', ARGV[8])
  redis.call('HINCRBY', key, 'i:' .. math.random(0, n_items - 1), 1)
  redis.call('HINCRBY', key, 'i:' .. math.random(0, n_items - 1), 1)
end
return {'ok', ''}
