-- One participant step of one transaction, applied exactly once.
--
-- KEYS[1]    the step record of the transaction (a hash: state, and the lines taken)
-- KEYS[2..]  the accounts the lines move (item hashes for stock, user hashes for payment)
-- ARGV[1]    phase: try | commit | cancel
-- ARGV[2]    protocol: saga | 2pc (try only: a saga action is final, a 2PC prepare waits)
-- ARGV[3]    the account field that holds the amount (stock | credit)
-- ARGV[4]    the refusal code when an account has too little (out_of_stock | insufficient_credit)
-- ARGV[5..]  the amount of each line, as decimal strings (exact 64-bit arithmetic stays in
--            HINCRBY; Lua numbers are doubles and are only used for signs)
--
-- Returns {outcome, code, id}: outcome is "done" or "refused"; code and id explain a refusal.
-- The state, and so the reply, of a repeated command is the recorded one.
local record, phase, protocol, field, short = KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local state = redis.call('HGET', record, 'state')

local function give_back()
  local lines = redis.call('HGETALL', record)
  for i = 1, #lines, 2 do
    local key = string.match(lines[i], '^line:(.*)$')
    if key then redis.call('HINCRBY', key, field, lines[i + 1]) end
  end
end

if phase == 'try' then
  if state == 'taken' or state == 'prepared' or state == 'committed' then return {'done', '', ''} end
  if state == 'refused' then
    return {'refused', redis.call('HGET', record, 'code'), redis.call('HGET', record, 'id')}
  end
  if state then return {'refused', 'cancelled', ''} end
  for i = 2, #KEYS do
    if redis.call('EXISTS', KEYS[i]) == 0 then
      redis.call('HSET', record, 'state', 'refused', 'code', 'not_found', 'id', KEYS[i])
      return {'refused', 'not_found', KEYS[i]}
    end
  end
  for i = 2, #KEYS do
    local take = ARGV[i + 3]
    if take ~= '0' then take = '-' .. take end
    local left = redis.call('HINCRBY', KEYS[i], field, take)
    if left < 0 then
      for j = 2, i do redis.call('HINCRBY', KEYS[j], field, ARGV[j + 3]) end
      redis.call('HSET', record, 'state', 'refused', 'code', short, 'id', KEYS[i])
      return {'refused', short, KEYS[i]}
    end
    redis.call('HSET', record, 'line:' .. KEYS[i], ARGV[i + 3])
  end
  if protocol == 'saga' then state = 'taken' else state = 'prepared' end
  redis.call('HSET', record, 'state', state)
  return {'done', '', ''}
elseif phase == 'commit' then
  if state == 'prepared' then
    redis.call('HSET', record, 'state', 'committed')
    return {'done', '', ''}
  end
  if state == 'committed' or state == 'taken' then return {'done', '', ''} end
  return {'refused', 'not_prepared', ''}
elseif phase == 'cancel' then
  if not state then
    redis.call('HSET', record, 'state', 'cancelled')
  elseif state == 'taken' then
    give_back()
    redis.call('HSET', record, 'state', 'compensated')
  elseif state == 'prepared' then
    give_back()
    redis.call('HSET', record, 'state', 'aborted')
  elseif state == 'committed' then
    return {'refused', 'already_committed', ''}
  end
  return {'done', '', ''}
end
return redis.error_reply('unknown phase ' .. tostring(phase))
