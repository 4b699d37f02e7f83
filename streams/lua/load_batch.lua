-- Read what one partition's batch needs in one round trip. Every key is declared (one partition's slot).
-- KEYS[1] = idx:attrs, KEYS[2...] = the customers' state and seen keys.
-- ARGV[1] = JSON [[customer_id, k of state, [[topic, k of seen, ["<event digest>", ...]], ...]], ...]
-- Returns a flat array: customer_id, state JSON (or false), index attributes (or false), then per topic:
-- topic, {score|false, ...}; an empty string ends each customer. Nested arrays, not JSON, so the state is not
-- escaped twice.
local wanted = cjson.decode(ARGV[1])

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
for _, customer in ipairs(wanted) do
  out[#out + 1] = customer[1]
  out[#out + 1] = redis.call('HGET', KEYS[customer[2]], 'state')
  out[#out + 1] = redis.call('HGET', KEYS[1], customer[1])
  for _, seen in ipairs(customer[3]) do
    out[#out + 1] = seen[1]
    out[#out + 1] = scores_of(KEYS[seen[2]], seen[3])
  end
  out[#out + 1] = ''
end
return out
