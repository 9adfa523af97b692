-- Replaces accounts "0".."n-1" at once (`batch_init`), unless any of them is part of an
-- unfinished checkout.
--
-- ARGV[1]  key prefix ('item:' | 'user:'), ARGV[2] n,
-- ARGV[3..] field/value pairs every account gets (held is always 0)
--
-- An account with a nonzero `held` has a checkout step that is still undecided; replacing it
-- would lose the hold, and the step's later commit or cancel would move amounts that no
-- longer exist. So the whole batch is refused, before anything is written, if one is held.
-- Keys are computed here rather than passed, so one call covers any n.
-- Returns {status, id}: ok | in_use (with the first held account's id).
local prefix, n = ARGV[1], tonumber(ARGV[2])
for i = 0, n - 1 do
  local held = redis.call('HGET', prefix .. i, 'held')
  if held and held ~= '0' then return {'in_use', tostring(i)} end
end
local fields = {}
for i = 3, #ARGV do fields[#fields + 1] = ARGV[i] end
fields[#fields + 1] = 'held'
fields[#fields + 1] = '0'
for i = 0, n - 1 do
  redis.call('DEL', prefix .. i)
  redis.call('HSET', prefix .. i, unpack(fields))
end
return {'ok', ''}
