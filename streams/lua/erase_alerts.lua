-- Erase every stored alert of one customer: their hashes, their stream entries, the index.
-- KEYS[1] customer's alert index, KEYS[2] alert stream, KEYS[3] stats hash; ARGV[1] key prefix
local members = redis.call('SMEMBERS', KEYS[1])
for _, member in ipairs(members) do
  local space = string.find(member, ' ', 1, true)
  redis.call('DEL', ARGV[1] .. string.sub(member, 1, space - 1))
  redis.call('XDEL', KEYS[2], string.sub(member, space + 1))
end
redis.call('DEL', KEYS[1])
redis.call('HINCRBY', KEYS[3], 'erased', #members)
return #members
