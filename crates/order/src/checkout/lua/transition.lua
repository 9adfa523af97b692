-- Moves a transaction from one state to the next, fenced by its owner, and renews the lease.
-- This is the write-ahead record: the coordinator writes the state before it acts on it.
-- The order becomes paid in the same step that logs the commit (the Committing state), and
-- its checkout slot is freed when the transaction is final; the record then lives for the
-- retention period and no longer.
--
-- KEYS[1] transaction hash, KEYS[2] active set, KEYS[3] order hash
-- ARGV[1] owner, ARGV[2] expected state, ARGV[3] next state ('' = only renew the lease),
-- ARGV[4] lease ms, ARGV[5] transaction id, ARGV[6] retention s,
-- ARGV[7..] extra field/value pairs to record
-- Returns {status, state}: ok | fenced (someone else owns it, or it moved on; with the
-- state found, '' if the record is gone).
local tx, active, order = KEYS[1], KEYS[2], KEYS[3]
local owner, state = unpack(redis.call('HMGET', tx, 'owner', 'state'))
if owner ~= ARGV[1] or state ~= ARGV[2] then return {'fenced', state or ''} end
local next = ARGV[3]
if next == '' then next = state end
for i = 7, #ARGV, 2 do redis.call('HSET', tx, ARGV[i], ARGV[i + 1]) end
redis.call('HSET', tx, 'state', next)
if next == 'committing' or next == 'committed' then redis.call('HSET', order, 'paid', '1') end
if next == 'committed' or next == 'aborted' then
  redis.call('ZREM', active, ARGV[5])
  if redis.call('HGET', order, 'checkout') == ARGV[5] then redis.call('HDEL', order, 'checkout') end
  redis.call('EXPIRE', tx, ARGV[6])
else
  local now = redis.call('TIME')
  local lease = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) + tonumber(ARGV[4])
  redis.call('HSET', tx, 'lease', lease)
  redis.call('ZADD', active, lease, ARGV[5])
end
return {'ok', next}
