-- Moves a transaction from one state to the next, fenced by its owner, and renews the lease.
-- This is the write-ahead record: the coordinator writes the state before it acts on it.
-- The order becomes paid in the same step that logs the commit (the Committing state), and
-- its checkout slot is freed when the transaction is final; the record then lives for the
-- retention period and no longer.
--
-- For the console, in the same step and at no extra round trip: the time of each state
-- (`t:{state}`, ms), the ids of the last 200 finished transactions (KEYS[4]), and, when the
-- client's answer is decided (Committing, or Aborted), its outcome and latency in a 5-second
-- bucket (KEYS[5], a hash that expires after 10 minutes): `o:{outcome}` counts and `h:{i}`
-- latency histogram counts, bucket i of LATENCY_BOUNDS_MS (order::console), 14 = slower.
--
-- KEYS[1] transaction hash, KEYS[2] active set, KEYS[3] order hash, KEYS[4] recent list,
-- KEYS[5] the current stats bucket
-- ARGV[1] owner, ARGV[2] expected state, ARGV[3] next state ('' = only renew the lease),
-- ARGV[4] lease ms, ARGV[5] transaction id, ARGV[6] retention s,
-- ARGV[7..] extra field/value pairs to record
-- Returns {status, state}: ok | fenced (someone else owns it, or it moved on; with the
-- state found, '' if the record is gone).
local tx, active, order, recent, stats = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local owner, state, started = unpack(redis.call('HMGET', tx, 'owner', 'state', 'started'))
if owner ~= ARGV[1] or state ~= ARGV[2] then return {'fenced', state or ''} end
local now = redis.call('TIME')
now = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local next = ARGV[3]
if next == '' then next = state end
for i = 7, #ARGV, 2 do redis.call('HSET', tx, ARGV[i], ARGV[i + 1]) end
if next ~= state then
  redis.call('HSET', tx, 'state', next, 't:' .. next, now)
  if next == 'committing' or next == 'aborted' then
    local outcome = 'committed'
    if next == 'aborted' then outcome = redis.call('HGET', tx, 'code') or 'interrupted' end
    local took, bucket = now - (tonumber(started) or now), 14
    for i, bound in ipairs({1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000}) do
      if took <= bound then bucket = i break end
    end
    redis.call('HINCRBY', stats, 'o:' .. outcome, 1)
    redis.call('HINCRBY', stats, 'h:' .. bucket, 1)
    redis.call('EXPIRE', stats, 600)
  end
end
if next == 'committing' or next == 'committed' then redis.call('HSET', order, 'paid', '1') end
if next == 'committed' or next == 'aborted' then
  redis.call('ZREM', active, ARGV[5])
  if redis.call('HGET', order, 'checkout') == ARGV[5] then redis.call('HDEL', order, 'checkout') end
  redis.call('EXPIRE', tx, ARGV[6])
  if next ~= state then
    redis.call('LPUSH', recent, ARGV[5])
    redis.call('LTRIM', recent, 0, 199)
  end
else
  local lease = now + tonumber(ARGV[4])
  redis.call('HSET', tx, 'lease', lease)
  redis.call('ZADD', active, lease, ARGV[5])
end
return {'ok', next}
