-- Apply one partition's batch atomically, or nothing if this worker no longer owns the partition.
-- A Lua script runs as one transaction (like MULTI/EXEC) and can check the fence first, which MULTI/EXEC
-- cannot do without an extra WATCH round trip. Every key is declared in KEYS and carries the partition's hash
-- tag (streams/keyspace.py): one slot, on one Redis or a Redis Cluster alike. The ops name keys by their index
-- in KEYS (k below), never by a name built here.
-- KEYS[1] fence hash (tokens per topic-partition, and 'commits'), KEYS[2] offsets, KEYS[3] watermark,
-- KEYS[4] wheel, KEYS[5] idx:value, KEYS[6] idx:churn, KEYS[7] idx:attrs, KEYS[8...] the batch's other keys.
-- ARGV[1] = JSON (below), ARGV[2...] = state JSONs (not inside ARGV[1], to avoid escaping JSON in JSON):
--   fences     [["<topic>:<partition>", token], ...]   must equal the stored fence tokens
--   commits    n                                        must equal the partition's stored commit count
--   offsets    [["<topic>:<partition>", offset], ...]  last offset applied by this batch
--   watermarks [["<topic>:<partition>", max_event_ms], ...] moved forward only
--   del        [k, ...]                                 keys deleted first (erased customers)
--   attrs      [[customer_id, "<band>|<segment>" or "", new or ""], ...] the index's attributes before
--              (as loaded: checked) and after; srem / sadd [[k, customer_id], ...] move the customer's sets
--   zrem       [customer_id, ...]                       leave idx:value and idx:churn
--   zadd       [[customer_id, value, churn or ""], ...] idx:value and idx:churn scores
--   confirm    [k, ...]                                 erasure confirmations (kept a week; no customer id)
--   states     [[k, argv index], ...]
--   seen       [[k, floor_ms, score, digest, ...], ...]  ids older than floor_ms (event time) are forgotten
--   counters   [[k, field, increment, ...], ...]
--   wheel      {"remove": [customer_id, ...], "add": ["<wake_ms>", customer_id, ...]}
--   zincr      [[k, member, "<increment>", ...], ...] item co-occurrence counts (strings: exact doubles)
local batch = cjson.decode(ARGV[1])
local fence_key, offsets_key, watermark_key, wheel_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local value_key, churn_key, attrs_key = KEYS[5], KEYS[6], KEYS[7]

-- redis.call(command, key, values...) in chunks: unpack() fails beyond ~8,000 values, which one
-- catch-up batch can reach (thousands of wheel entries in a partition, of ids of one customer).
-- The chunk is even, so ZADD's score/member pairs never split.
local function call_chunked(command, key, values, first, last)
  for start = first, last, 1000 do
    redis.call(command, key, unpack(values, start, math.min(start + 999, last)))
  end
end

for _, fence in ipairs(batch.fences) do
  local current = redis.call('HGET', fence_key, fence[1])
  if current ~= tostring(fence[2]) then
    return redis.error_reply('FENCED ' .. fence[1] .. ' token ' .. tostring(fence[2]) .. ' current ' .. tostring(current))
  end
end
-- A batch already applied (its reply was lost and the worker retried) would count its events twice: its
-- offsets are stored already, or (a batch of wake-ups only) the partition's commit count has moved past it.
-- The reply is the partition's commit count (the worker's next 'commits'), negative when not applied.
local commits = tonumber(redis.call('HGET', fence_key, 'commits') or '0')
for _, offset in ipairs(batch.offsets) do
  local stored = redis.call('HGET', offsets_key, offset[1])
  if stored and tonumber(stored) >= tonumber(offset[2]) then
    return -commits - 1
  end
end
if commits ~= batch.commits then
  return -commits - 1
end
for _, entry in ipairs(batch.attrs) do
  if (redis.call('HGET', attrs_key, entry[1]) or '') ~= entry[2] then
    return redis.error_reply('INDEX_MOVED ' .. entry[1])
  end
end

for _, k in ipairs(batch.del) do
  redis.call('DEL', KEYS[k])
end
for _, entry in ipairs(batch.srem) do
  redis.call('SREM', KEYS[entry[1]], entry[2])
end
for _, entry in ipairs(batch.sadd) do
  redis.call('SADD', KEYS[entry[1]], entry[2])
end
for _, entry in ipairs(batch.attrs) do
  if entry[3] ~= '' then
    redis.call('HSET', attrs_key, entry[1], entry[3])
  else
    redis.call('HDEL', attrs_key, entry[1])
  end
end
for _, customer_id in ipairs(batch.zrem) do
  redis.call('ZREM', value_key, customer_id)
  redis.call('ZREM', churn_key, customer_id)
end
for _, entry in ipairs(batch.zadd) do
  redis.call('ZADD', value_key, entry[2], entry[1])
  if entry[3] ~= '' then
    redis.call('ZADD', churn_key, entry[3], entry[1])
  end
end
for _, k in ipairs(batch.confirm) do
  redis.call('SET', KEYS[k], 'erased', 'EX', 604800)
end
for _, entry in ipairs(batch.states) do
  redis.call('HSET', KEYS[entry[1]], 'state', ARGV[entry[2]])
end
for _, entry in ipairs(batch.seen) do
  local key = KEYS[entry[1]]
  if #entry > 2 then
    call_chunked('ZADD', key, entry, 3, #entry)
  end
  redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. entry[2])
end
for _, entry in ipairs(batch.counters) do
  local key = KEYS[entry[1]]
  for i = 2, #entry, 2 do
    if redis.call('HINCRBY', key, entry[i], entry[i + 1]) == 0 then
      redis.call('HDEL', key, entry[i])  -- empty sketch buckets take no memory
    end
  end
end
if #batch.wheel.remove > 0 then
  call_chunked('ZREM', wheel_key, batch.wheel.remove, 1, #batch.wheel.remove)
end
if #batch.wheel.add > 0 then
  call_chunked('ZADD', wheel_key, batch.wheel.add, 1, #batch.wheel.add)
end
for _, entry in ipairs(batch.zincr) do
  local key = KEYS[entry[1]]
  for i = 2, #entry, 2 do
    redis.call('ZINCRBY', key, entry[i + 1], entry[i])
  end
end
for _, offset in ipairs(batch.offsets) do
  redis.call('HSET', offsets_key, offset[1], offset[2])
end
for _, watermark in ipairs(batch.watermarks) do
  local current = tonumber(redis.call('HGET', watermark_key, watermark[1]) or '-1')
  if tonumber(watermark[2]) > current then
    redis.call('HSET', watermark_key, watermark[1], watermark[2])
  end
end
return redis.call('HINCRBY', fence_key, 'commits', 1)
