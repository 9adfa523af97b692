-- One participant step of one transaction, applied exactly once.
--
-- KEYS[1]    the step record of the transaction (a hash: state, and the lines taken)
-- KEYS[2..]  the accounts the lines move (item hashes for stock, user hashes for payment)
-- ARGV[1]    phase: try | commit | cancel
-- ARGV[2]    protocol: saga | 2pc (try only: a saga action is final, a 2PC prepare waits)
-- ARGV[3]    the account field that holds the available amount (stock | credit)
-- ARGV[4]    the refusal code when an account has too little (out_of_stock | insufficient_credit)
-- ARGV[5]    '1' if a shortage that holds could cover answers busy, '0' if it is refused
-- ARGV[6..]  the amount of each line, as decimal strings (exact 64-bit arithmetic stays in
--            HINCRBY; Lua numbers are doubles and only decide signs and comparisons)
--
-- Besides the available amount, each account keeps `held`: what undecided transactions took
-- (2PC prepared, saga taken and not yet confirmed). A try that finds too little, but would fit
-- if those transactions aborted, answers `busy` and records nothing when ARGV[5] allows it:
-- the caller asks again shortly, so a checkout is never refused for stock that an aborting
-- checkout gives back.
--
-- Returns {outcome, code, id}: outcome is done | refused | busy; code and id explain a
-- refusal. The state, and so the reply, of a repeated command is the recorded one.
local record, phase, protocol, field, short = KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local may_wait = ARGV[5] == '1'
local state = redis.call('HGET', record, 'state')

-- Applies `sign` times each recorded line to the available amount, and releases the holds.
local function settle(give_back)
  local lines = redis.call('HGETALL', record)
  for i = 1, #lines, 2 do
    local key = string.match(lines[i], '^line:(.*)$')
    if key and lines[i + 1] ~= '0' then
      if give_back then redis.call('HINCRBY', key, field, lines[i + 1]) end
      redis.call('HINCRBY', key, 'held', '-' .. lines[i + 1])
    end
  end
end

if phase == 'try' then
  if state == 'taken' or state == 'prepared' or state == 'committed' or state == 'confirmed' then
    return {'done', '', ''}
  end
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
    local want = tonumber(ARGV[i + 4])
    local have = tonumber(redis.call('HGET', KEYS[i], field) or '0')
    if have < want then
      local held = tonumber(redis.call('HGET', KEYS[i], 'held') or '0')
      if may_wait and held > 0 and have + held >= want then return {'busy', short, KEYS[i]} end
      redis.call('HSET', record, 'state', 'refused', 'code', short, 'id', KEYS[i])
      return {'refused', short, KEYS[i]}
    end
  end
  for i = 2, #KEYS do
    local take = ARGV[i + 4]
    if take ~= '0' then
      redis.call('HINCRBY', KEYS[i], field, '-' .. take)
      redis.call('HINCRBY', KEYS[i], 'held', take)
    end
    redis.call('HSET', record, 'line:' .. KEYS[i], take)
  end
  if protocol == 'saga' then state = 'taken' else state = 'prepared' end
  redis.call('HSET', record, 'state', state)
  return {'done', '', ''}
elseif phase == 'commit' then
  -- 2PC: the decision. Saga: the coordinator confirms the action is final.
  if state == 'prepared' or state == 'taken' then
    settle(false)
    if state == 'prepared' then state = 'committed' else state = 'confirmed' end
    redis.call('HSET', record, 'state', state)
    return {'done', '', ''}
  end
  if state == 'committed' or state == 'confirmed' then return {'done', '', ''} end
  return {'refused', 'not_prepared', ''}
elseif phase == 'cancel' then
  if not state then
    redis.call('HSET', record, 'state', 'cancelled')
  elseif state == 'taken' then
    settle(true)
    redis.call('HSET', record, 'state', 'compensated')
  elseif state == 'prepared' then
    settle(true)
    redis.call('HSET', record, 'state', 'aborted')
  elseif state == 'committed' or state == 'confirmed' then
    return {'refused', 'already_committed', ''}
  end
  return {'done', '', ''}
end
return redis.error_reply('unknown phase ' .. tostring(phase))
