-- Publish a churn model snapshot: retain it among the newest ARGV[4] versions, record the trainer's report,
-- and serve it unless an operator holds a version (POST /models/churn/pin): then the hold wins, and the new
-- version waits in the retained set until the hold is released.
-- KEYS[1] served snapshot, KEYS[2] retained snapshots (hash: version -> snapshot), KEYS[3] held version,
-- KEYS[4] trainer report, KEYS[5] retained versions by the event time they were trained until (sorted set);
-- ARGV[1] version, ARGV[2] snapshot, ARGV[3] report, ARGV[4] versions to retain, ARGV[5] trained until (ms).
-- Returns 1 if the snapshot is now served, 0 if a hold kept it back.
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('SET', KEYS[4], ARGV[3])
redis.call('ZADD', KEYS[5], ARGV[5], ARGV[1])
local held = redis.call('GET', KEYS[3])
if not held then
  redis.call('SET', KEYS[1], ARGV[2])
end
local versions = redis.call('HKEYS', KEYS[2])
table.sort(versions, function(a, b) return tonumber(a) > tonumber(b) end)
for i = tonumber(ARGV[4]) + 1, #versions do
  if versions[i] ~= held then
    redis.call('HDEL', KEYS[2], versions[i])
    redis.call('ZREM', KEYS[5], versions[i])
  end
end
if held then
  return 0
end
return 1
