-- Apply one batch atomically, or nothing if this worker no longer owns a partition.
-- A Lua script runs as one transaction (like MULTI/EXEC) and can check the fence
-- first, which MULTI/EXEC cannot do without an extra WATCH round trip.
-- ARGV[1] = prefix, ARGV[3], ARGV[4], ...: customer_id, state JSON pairs (not inside ARGV[2], to
-- avoid escaping JSON in JSON), ARGV[2] = JSON:
--   fences    {"<topic>:<partition>": token}      must equal the stored fence tokens
--   offsets   {"<topic>:<partition>": offset}     last offset applied by this batch
--   watermarks{"<topic>:<partition>": max_event_ms} moved forward only
--   erase     ["<customer_id>", ...]               every key of the customer is deleted first
--   customer_key_suffixes ["", ":seen:purchases", ...]
--   seen      {"<customer_id>": {"<topic>": ["<score>", "<digest>", ...]}}
--   seen_floor_ms {"<customer_id>": {"<topic>": ms}}  ids older than this (event time) are forgotten
--   counters  {"<hash>": {field: increment}}
--   wheel     {"<partition>": {"add": ["<wake_ms>", "<customer_id>", ...], "remove": ["<customer_id>", ...]}}
--   zincr     {"<sorted set>": {member: "<increment>"}}   item co-occurrence counts (strings: exact doubles)
--   index     {"<customer_id>": ["<net_minor>", "<band>", "<segment>", "<churn_p>"]}  search index entries
--             ("" for an unknown band, segment or churn_p; online_models/customer_index.py)
--   confirm   ["erasure:<digest>", ...]            erase events to confirm (kept a week; no customer id in them)
local prefix = ARGV[1]
local batch = cjson.decode(ARGV[2])

-- redis.call(command, key, values...) in chunks: unpack() fails beyond ~8,000 values, which one
-- catch-up batch can reach (thousands of wheel entries in a partition, of ids of one customer).
-- The chunk is even, so ZADD's score/member pairs never split.
local function call_chunked(command, key, values)
  for first = 1, #values, 1000 do
    redis.call(command, key, unpack(values, first, math.min(first + 999, #values)))
  end
end

local fence_key = prefix .. 'fence'
for tp, token in pairs(batch.fences) do
  local current = redis.call('HGET', fence_key, tp)
  if current ~= tostring(token) then
    return redis.error_reply('FENCED ' .. tp .. ' token ' .. tostring(token) .. ' current ' .. tostring(current))
  end
end
-- A batch whose offsets are already stored was applied before (its reply was lost and the
-- worker retried): applying it again would count its events twice.
for tp, offset in pairs(batch.offsets) do
  local stored = redis.call('HGET', prefix .. 'offsets', tp)
  if stored and tonumber(stored) >= tonumber(offset) then
    return 'ALREADY_APPLIED'
  end
end
-- The search index: idx:value and idx:churn (sorted by net spend, churn probability), idx:band:<band> and
-- idx:segment:<id> (sets), and idx:attrs (customer -> "band|segment", to leave the old sets on a change).
local attrs_key = prefix .. 'idx:attrs'
local function leave_sets(customer_id, attrs)
  local band, segment = string.match(attrs, '^([^|]*)|(.*)$')
  if band ~= '' then redis.call('SREM', prefix .. 'idx:band:' .. band, customer_id) end
  if segment ~= '' then redis.call('SREM', prefix .. 'idx:segment:' .. segment, customer_id) end
end
for _, customer_id in ipairs(batch.erase) do
  local base = prefix .. 'c:{' .. customer_id .. '}'
  for _, suffix in ipairs(batch.customer_key_suffixes) do
    redis.call('DEL', base .. suffix)
  end
  local attrs = redis.call('HGET', attrs_key, customer_id)
  if attrs then
    leave_sets(customer_id, attrs)
    redis.call('HDEL', attrs_key, customer_id)
  end
  redis.call('ZREM', prefix .. 'idx:value', customer_id)
  redis.call('ZREM', prefix .. 'idx:churn', customer_id)
end
for _, key in ipairs(batch.confirm) do
  redis.call('SET', prefix .. key, 'erased', 'EX', 604800)
end
for i = 3, #ARGV, 2 do
  redis.call('HSET', prefix .. 'c:{' .. ARGV[i] .. '}', 'state', ARGV[i + 1])
end
for customer_id, entry in pairs(batch.index) do
  local band, segment = entry[2], entry[3]
  local attrs = band .. '|' .. segment
  local old = redis.call('HGET', attrs_key, customer_id)
  if old ~= attrs then
    if old then leave_sets(customer_id, old) end
    if band ~= '' then redis.call('SADD', prefix .. 'idx:band:' .. band, customer_id) end
    if segment ~= '' then redis.call('SADD', prefix .. 'idx:segment:' .. segment, customer_id) end
    redis.call('HSET', attrs_key, customer_id, attrs)
  end
  redis.call('ZADD', prefix .. 'idx:value', entry[1], customer_id)
  if entry[4] ~= '' then
    redis.call('ZADD', prefix .. 'idx:churn', entry[4], customer_id)
  end
end
for customer_id, by_topic in pairs(batch.seen) do
  for topic, members in pairs(by_topic) do
    local key = prefix .. 'c:{' .. customer_id .. '}:seen:' .. topic
    call_chunked('ZADD', key, members)
    redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. batch.seen_floor_ms[customer_id][topic])
  end
end
for hash, increments in pairs(batch.counters) do
  for field, amount in pairs(increments) do
    if redis.call('HINCRBY', prefix .. hash, field, amount) == 0 then
      redis.call('HDEL', prefix .. hash, field)  -- empty sketch buckets take no memory
    end
  end
end
for partition, changes in pairs(batch.wheel) do
  local key = prefix .. 'wheel:' .. partition
  call_chunked('ZREM', key, changes.remove)
  call_chunked('ZADD', key, changes.add)
end
for key, increments in pairs(batch.zincr) do
  local full_key = prefix .. key
  for member, amount in pairs(increments) do
    redis.call('ZINCRBY', full_key, amount, member)
  end
end
for tp, offset in pairs(batch.offsets) do
  redis.call('HSET', prefix .. 'offsets', tp, offset)
end
for tp, max_event_ms in pairs(batch.watermarks) do
  local current = tonumber(redis.call('HGET', prefix .. 'watermark', tp) or '-1')
  if tonumber(max_event_ms) > current then
    redis.call('HSET', prefix .. 'watermark', tp, max_event_ms)
  end
end
return 'OK'
