-- Take ownership of one partition's topic-partitions: bump their fence tokens (a zombie's commits are then
-- refused, commit_batch.lua) and read what is applied. KEYS[1] = the partition's fence, KEYS[2] its offsets;
-- ARGV = the topic-partitions. Returns {commit count, token, offset or false, token, offset or false, ...}.
local out = {tonumber(redis.call('HGET', KEYS[1], 'commits') or '0')}
for i = 1, #ARGV do
  out[#out + 1] = redis.call('HINCRBY', KEYS[1], ARGV[i], 1)
  out[#out + 1] = redis.call('HGET', KEYS[2], ARGV[i])
end
return out
