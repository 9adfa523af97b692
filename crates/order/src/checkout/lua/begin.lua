-- Starts the checkout transaction of an order, unless it is paid or one is in flight.
-- The transaction record snapshots the order (user, total, items), so the participants are
-- asked for exactly what the order held when the checkout began.
--
-- KEYS[1] order hash, KEYS[2] transaction hash, KEYS[3] active set (score = lease expiry, ms),
-- KEYS[4] the batch lock (while batch_init replaces orders 0..n-1, a hash with that n)
-- ARGV[1] transaction id, ARGV[2] order id, ARGV[3] protocol, ARGV[4] owner, ARGV[5] lease ms
-- Returns {status, transaction id, record}: started (with the new record's fields and
-- values, flat) | in_flight (with the transaction in flight) | paid | missing | replacing
-- (batch_init is replacing this order).
local order, tx, active = KEYS[1], KEYS[2], KEYS[3]
local replacing = tonumber(redis.call('HGET', KEYS[4], 'n'))
local number = tonumber(ARGV[2])
if replacing and number and tostring(number) == ARGV[2] and number < replacing then
  return {'replacing', '', {}}
end
local flat = redis.call('HGETALL', order)
if #flat == 0 then return {'missing', '', {}} end
local fields = {}
for i = 1, #flat, 2 do fields[flat[i]] = flat[i + 1] end
if fields['paid'] == '1' then return {'paid', '', {}} end
if fields['checkout'] then return {'in_flight', fields['checkout'], {}} end
local now = redis.call('TIME')
local lease = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) + tonumber(ARGV[5])
local record = {'state', 'trying', 'order', ARGV[2], 'protocol', ARGV[3], 'owner', ARGV[4],
  'lease', lease, 'user', fields['user'], 'total', fields['total'], 'started', lease - tonumber(ARGV[5]),
  't:trying', lease - tonumber(ARGV[5])}
for k, v in pairs(fields) do
  if string.sub(k, 1, 2) == 'i:' then
    record[#record + 1] = k
    record[#record + 1] = v
  end
end
redis.call('HSET', tx, unpack(record))
redis.call('HSET', order, 'checkout', ARGV[1])
redis.call('ZADD', active, lease, ARGV[1])
return {'started', ARGV[1], record}
