-- Erase every stored alert of one customer: their hashes, their stream entries, the index.
-- KEYS[1] customer's alert index, KEYS[2] alert stream, KEYS[3] stats hash, KEYS[4...] the alert hashes the
-- index named when the caller read it; ARGV = those index members ("<hash key> <stream entry id>"), in the
-- same order. Returns -1, erasing nothing, if the index changed since (the caller reads it again).
local members = redis.call('SMEMBERS', KEYS[1])
if #members ~= #ARGV then
  return -1
end
for i = 1, #ARGV do
  if redis.call('SISMEMBER', KEYS[1], ARGV[i]) == 0 then
    return -1
  end
end
for i = 1, #ARGV do
  local space = string.find(ARGV[i], ' ', 1, true)
  redis.call('DEL', KEYS[3 + i])
  redis.call('XDEL', KEYS[2], string.sub(ARGV[i], space + 1))
end
redis.call('DEL', KEYS[1])
redis.call('HINCRBY', KEYS[3], 'erased', #ARGV)
return #ARGV
