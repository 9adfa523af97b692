-- One participant step of one transaction, applied exactly once. (num.lua is prepended.)
--
-- KEYS[1]    the step record of the transaction (a hash: state, and the lines taken)
-- KEYS[2..]  the accounts the lines move (item hashes for stock, user hashes for payment),
--            each at most once
-- ARGV[1]    phase: try | commit | cancel
-- ARGV[2]    protocol: saga | 2pc (a saga action is final at once, a 2PC prepare waits)
-- ARGV[3]    the account field that holds the available amount (stock | credit)
-- ARGV[4]    '1' if a shortage that holds could cover answers busy, '0' if it is refused
-- ARGV[5]    seconds a finished step record lives (its duplicate check) before it expires
-- ARGV[6..]  try only: the amount of each line, a canonical decimal string
--
-- Invariant, for every account: available >= 0, held >= 0, available + held <= i64::MAX.
-- `held` is what undecided transactions took (2PC prepared, saga taken and not confirmed).
-- A try moves an amount from available to held, a commit drops it from held, a cancel moves
-- it back: no step can break the invariant, and each checks what it relies on before its
-- first write, so an error never leaves a partial effect.
--
-- A try that finds too little, but would fit if the undecided transactions aborted, answers
-- busy and records nothing when ARGV[4] allows it: the caller asks again shortly, so a
-- checkout is never refused for stock that an aborting checkout gives back.
--
-- Returns {outcome, reason, account key, replayed}: outcome is done | refused | busy; a
-- refusal's reason is missing | short | cancelled | not_prepared | already_committed. The
-- state, and so the reply, of a repeated command is the recorded one, and then replayed is
-- '1' (else ''): the metrics count such duplicates.
local record, phase, protocol, field = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local may_wait, retention = ARGV[4] == '1', ARGV[5]
-- The record, read once: every command a script runs is also written to the AOF or costs a
-- lookup, and this script runs for every step of every checkout.
local flat = redis.call('HGETALL', record)
local recorded = {}
for i = 1, #flat, 2 do recorded[flat[i]] = flat[i + 1] end
local state = recorded['state']

-- Ends the step: its record is the duplicate check for as long as a copy of its commands
-- may still be applied, and no longer.
local function finish(new_state, ...)
  redis.call('HSET', record, 'state', new_state, ...)
  redis.call('EXPIRE', record, retention)
end

-- The recorded lines {key, amount}, with the checks that moving them relies on.
local function recorded_lines(give_back)
  local lines = {}
  for i = 1, #flat, 2 do
    local key = string.match(flat[i], '^line:(.*)$')
    if key then
      local amount = canonical(flat[i + 1]) or error('corrupt line ' .. flat[i])
      local held = counter(key, 'held')
      if cmp(held, amount) < 0 then error('held below a recorded line: ' .. key) end
      if give_back and not fits(add(counter(key, field), amount)) then
        error('giving back would overflow ' .. key)
      end
      lines[#lines + 1] = {key, amount}
    end
  end
  return lines
end

-- Releases the holds of the recorded lines, giving the amounts back if asked.
local function settle(give_back)
  for _, line in ipairs(recorded_lines(give_back)) do
    if line[2] ~= '0' then
      if give_back then redis.call('HINCRBY', line[1], field, line[2]) end
      redis.call('HINCRBY', line[1], 'held', '-' .. line[2])
    end
  end
end

if phase == 'try' then
  if state == 'taken' or state == 'prepared' or state == 'committed' or state == 'confirmed' then
    return {'done', '', '', '1'}
  end
  if state == 'refused' then
    return {'refused', recorded['reason'] or '', recorded['key'] or '', '1'}
  end
  if state then return {'refused', 'cancelled', '', ''} end
  local seen, wants = {}, {}
  for i = 2, #KEYS do
    if seen[KEYS[i]] then error('account listed twice: ' .. KEYS[i]) end
    seen[KEYS[i]] = true
    wants[i] = canonical(ARGV[i + 4]) or error('bad amount ' .. tostring(ARGV[i + 4]))
  end
  -- Both counters of each account in one read; an account without its available field may
  -- not exist at all, which only then costs an EXISTS. Every account is read before any is
  -- judged, so a missing account is reported before a short one, whatever their order.
  local balances = {}
  for i = 2, #KEYS do
    local v = redis.call('HMGET', KEYS[i], field, 'held')
    if not v[1] and redis.call('EXISTS', KEYS[i]) == 0 then
      finish('refused', 'reason', 'missing', 'key', KEYS[i])
      return {'refused', 'missing', KEYS[i], ''}
    end
    balances[i] = v
  end
  for i = 2, #KEYS do
    local have = checked(KEYS[i], field, balances[i][1])
    local held = checked(KEYS[i], 'held', balances[i][2])
    if cmp(have, wants[i]) < 0 then
      if may_wait and held ~= '0' and cmp(add(have, held), wants[i]) >= 0 then
        return {'busy', 'short', KEYS[i], ''}
      end
      finish('refused', 'reason', 'short', 'key', KEYS[i])
      return {'refused', 'short', KEYS[i], ''}
    end
  end
  local taken = {}
  for i = 2, #KEYS do
    if wants[i] ~= '0' then
      redis.call('HINCRBY', KEYS[i], field, '-' .. wants[i])
      redis.call('HINCRBY', KEYS[i], 'held', wants[i])
    end
    taken[#taken + 1] = 'line:' .. KEYS[i]
    taken[#taken + 1] = wants[i]
  end
  if protocol == 'saga' then state = 'taken' else state = 'prepared' end
  taken[#taken + 1] = 'state'
  taken[#taken + 1] = state
  redis.call('HSET', record, unpack(taken))
  return {'done', '', '', ''}
elseif phase == 'commit' then
  -- 2PC: the decision. Saga: the coordinator confirms the action is final.
  if state == 'prepared' or state == 'taken' then
    settle(false)
    finish(state == 'prepared' and 'committed' or 'confirmed')
    return {'done', '', '', ''}
  end
  if state == 'committed' or state == 'confirmed' then return {'done', '', '', '1'} end
  return {'refused', 'not_prepared', '', ''}
elseif phase == 'cancel' then
  local replayed = ''
  if not state then
    finish('cancelled')
  elseif state == 'taken' then
    settle(true)
    finish('compensated')
  elseif state == 'prepared' then
    settle(true)
    finish('aborted')
  elseif state == 'committed' or state == 'confirmed' then
    return {'refused', 'already_committed', '', ''}
  elseif state ~= 'refused' then
    replayed = '1' -- cancelled, compensated or aborted already
  end
  return {'done', '', '', replayed}
end
return error('unknown phase ' .. tostring(phase))
