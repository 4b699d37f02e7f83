-- Read what a batch needs in one round trip.
-- ARGV[1] = prefix, ARGV[2] = JSON {"<customer_id>": {"<topic>": ["<event digest>", ...]}, ...}
-- Returns JSON {"<customer_id>": {"state": [field, value, ...], "seen": {"<topic>": [score|false, ...]}}}
local prefix = ARGV[1]
local wanted = cjson.decode(ARGV[2])
local out = {}
for customer_id, by_topic in pairs(wanted) do
  local base = prefix .. 'c:{' .. customer_id .. '}'
  local seen = {}
  for topic, digests in pairs(by_topic) do
    seen[topic] = redis.call('ZMSCORE', base .. ':seen:' .. topic, unpack(digests))
  end
  out[customer_id] = {state = redis.call('HGETALL', base), seen = seen}
end
return cjson.encode(out)
