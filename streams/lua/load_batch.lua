-- Read what a batch needs in one round trip.
-- ARGV[1] = prefix, ARGV[2] = JSON {"<customer_id>": {"<topic>": ["<event digest>", ...]}, ...}
-- Returns a flat array: customer_id, state JSON (or false), then per topic: topic, {score|false, ...};
-- an empty string ends each customer. Nested arrays, not JSON, so the state is not escaped twice.
local prefix = ARGV[1]
local wanted = cjson.decode(ARGV[2])

-- ZMSCORE in chunks: unpack() fails beyond ~8,000 values (one busy customer in a big catch-up batch).
local function scores_of(key, members)
  local scores = {}
  for first = 1, #members, 1000 do
    local chunk = redis.call('ZMSCORE', key, unpack(members, first, math.min(first + 999, #members)))
    for i = 1, #chunk do
      scores[#scores + 1] = chunk[i]
    end
  end
  return scores
end

local out = {}
for customer_id, by_topic in pairs(wanted) do
  local base = prefix .. 'c:{' .. customer_id .. '}'
  out[#out + 1] = customer_id
  out[#out + 1] = redis.call('HGET', base, 'state')
  for topic, digests in pairs(by_topic) do
    out[#out + 1] = topic
    out[#out + 1] = scores_of(base .. ':seen:' .. topic, digests)
  end
  out[#out + 1] = ''
end
return out
