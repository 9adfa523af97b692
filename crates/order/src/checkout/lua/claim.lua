-- Takes over a transaction whose owner's lease expired (or, with a steal prefix, one owned
-- by an earlier incarnation of this same replica, which certainly is dead).
-- KEYS[1] transaction hash, KEYS[2] active set
-- ARGV[1] new owner, ARGV[2] lease ms, ARGV[3] transaction id, ARGV[4] steal prefix or ''
-- Returns {status, state}: claimed | busy | final | gone.
local tx, active = KEYS[1], KEYS[2]
local owner, state, lease = unpack(redis.call('HMGET', tx, 'owner', 'state', 'lease'))
if not state then
  redis.call('ZREM', active, ARGV[3])
  return {'gone', ''}
end
if state == 'committed' or state == 'aborted' then
  redis.call('ZREM', active, ARGV[3])
  return {'final', state}
end
local now = redis.call('TIME')
now = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local prefix = ARGV[4]
local mine_before = prefix ~= '' and owner ~= ARGV[1] and string.sub(owner, 1, #prefix) == prefix
if tonumber(lease) > now and not mine_before then return {'busy', state} end
local until_ = now + tonumber(ARGV[2])
redis.call('HSET', tx, 'owner', ARGV[1], 'lease', until_)
redis.call('ZADD', active, until_, ARGV[3])
return {'claimed', state}
