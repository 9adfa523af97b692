-- Moves a transaction from one state to the next, fenced by its owner, and renews the lease.
-- This is the write-ahead record: the coordinator writes the state before it acts on it.
-- The order becomes paid in the same step that logs the commit (the Committing state), and
-- its checkout slot is freed when the transaction is final; the record then lives for the
-- retention period and no longer.
--
-- Every field of the record (the state, the time of each state `t:{state}` and the notes
-- for the console) goes in one HSET: this script runs two or three times per checkout, and
-- each command it runs is also a command in the AOF, so it runs as few as it can.
--
-- KEYS[1] transaction hash, KEYS[2] active set, KEYS[3] order hash
-- ARGV[1] owner, ARGV[2] expected state, ARGV[3] next state ('' = only renew the lease),
-- ARGV[4] lease ms, ARGV[5] transaction id, ARGV[6] retention s,
-- ARGV[7..] extra field/value pairs to record
-- Returns {status, state, now}: ok | fenced (someone else owns it, or it moved on; with the
-- state found, '' if the record is gone); now is the Redis clock (ms) of the write.
local tx, active, order = KEYS[1], KEYS[2], KEYS[3]
local owner, state = unpack(redis.call('HMGET', tx, 'owner', 'state'))
if owner ~= ARGV[1] or state ~= ARGV[2] then return {'fenced', state or '', 0} end
local now = redis.call('TIME')
now = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local next = ARGV[3]
if next == '' then next = state end
local final = next == 'committed' or next == 'aborted'
local fields = {}
for i = 7, #ARGV do fields[#fields + 1] = ARGV[i] end
if next ~= state then
  fields[#fields + 1] = 'state'
  fields[#fields + 1] = next
  fields[#fields + 1] = 't:' .. next
  fields[#fields + 1] = now
end
if not final then
  local lease = now + tonumber(ARGV[4])
  fields[#fields + 1] = 'lease'
  fields[#fields + 1] = lease
  redis.call('ZADD', active, lease, ARGV[5])
end
if #fields > 0 then redis.call('HSET', tx, unpack(fields)) end
if next == 'committing' and next ~= state then redis.call('HSET', order, 'paid', '1') end
if final then
  redis.call('ZREM', active, ARGV[5])
  if redis.call('HGET', order, 'checkout') == ARGV[5] then redis.call('HDEL', order, 'checkout') end
  redis.call('EXPIRE', tx, ARGV[6])
end
return {'ok', next, now}
