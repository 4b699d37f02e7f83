-- Everything an item query scores, in one round trip.
-- ARGV[1] = prefix, ARGV[2] = candidates per anchor, then pairs: matrix ("co" | "vb"), anchor sku.
-- Returns: baskets, event-time clock (newest watermark), then per anchor:
--   anchor total, {neighbour, together, ...} (most frequent first), {orders with each neighbour, ...}.
-- The anchor total is the orders holding the anchor ("co") or preceded by a view of it ("vb").
local prefix = ARGV[1]
local candidates = tonumber(ARGV[2])
local counts_key = prefix .. 'item:counts'

local clock = 0
for _, value in ipairs(redis.call('HVALS', prefix .. 'watermark')) do
  clock = math.max(clock, tonumber(value))
end
local out = {redis.call('ZSCORE', prefix .. 'item:totals', 'baskets') or '0', tostring(clock)}
for i = 3, #ARGV, 2 do
  local matrix, sku = ARGV[i], ARGV[i + 1]
  local anchor_key = (matrix == 'co') and counts_key or (prefix .. 'item:viewed_before')
  local scored = redis.call('ZREVRANGE', prefix .. 'item:{' .. sku .. '}:' .. matrix, 0, candidates - 1, 'WITHSCORES')
  local members = {}
  for j = 1, #scored, 2 do
    members[#members + 1] = scored[j]
  end
  local totals = {}
  for first = 1, #members, 1000 do  -- unpack() fails beyond ~8,000 values
    local chunk = redis.call('ZMSCORE', counts_key, unpack(members, first, math.min(first + 999, #members)))
    for j = 1, #chunk do
      totals[#totals + 1] = chunk[j] or '0'
    end
  end
  out[#out + 1] = redis.call('ZSCORE', anchor_key, sku) or '0'
  out[#out + 1] = scored
  out[#out + 1] = totals
end
return out
