-- Read what a batch needs in one round trip.
-- ARGV[1] = prefix, ARGV[2] = JSON {"<customer_id>": {"<topic>": ["<event digest>", ...]}, ...}
-- Returns a flat array: customer_id, state JSON (or false), then per topic: topic, {score|false, ...};
-- an empty string ends each customer. Nested arrays, not JSON, so the state is not escaped twice.
local prefix = ARGV[1]
local wanted = cjson.decode(ARGV[2])
local out = {}
for customer_id, by_topic in pairs(wanted) do
  local base = prefix .. 'c:{' .. customer_id .. '}'
  out[#out + 1] = customer_id
  out[#out + 1] = redis.call('HGET', base, 'state')
  for topic, digests in pairs(by_topic) do
    out[#out + 1] = topic
    out[#out + 1] = redis.call('ZMSCORE', base .. ':seen:' .. topic, unpack(digests))
  end
  out[#out + 1] = ''
end
return out
