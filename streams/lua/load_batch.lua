-- Read what a batch needs in one round trip.
-- ARGV[1] = prefix, ARGV[2] = JSON {"<customer_id>": ["<event digest>", ...], ...}
-- Returns JSON {"<customer_id>": {"state": [field, value, ...], "seen": [score|false, ...]}}
local prefix = ARGV[1]
local wanted = cjson.decode(ARGV[2])
local out = {}
for customer_id, digests in pairs(wanted) do
  local base = prefix .. 'c:{' .. customer_id .. '}'
  local seen = {}
  if #digests > 0 then
    seen = redis.call('ZMSCORE', base .. ':seen', unpack(digests))
  end
  out[customer_id] = {state = redis.call('HGETALL', base), seen = seen}
end
return cjson.encode(out)
