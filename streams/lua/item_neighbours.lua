-- One partition's share of what an item query scores, in one round trip (the reader sums the partitions').
-- KEYS[1] = item:totals, KEYS[2] = item:counts, KEYS[3] = item:viewed_before, then per anchor its matrix key
-- (item:{<sku>}:co or :vb), all of one partition's slot. ARGV = per anchor: matrix ("co" | "vb"), anchor sku.
-- Returns: baskets, then per anchor: anchor total, {neighbour, together, ...} (all of them: the top of a sum
-- over partitions needs every partition's whole list).
-- The anchor total is the orders holding the anchor ("co") or preceded by a view of it ("vb").
local out = {redis.call('ZSCORE', KEYS[1], 'baskets') or '0'}
for i = 1, #ARGV, 2 do
  local matrix, sku = ARGV[i], ARGV[i + 1]
  local anchor_key = (matrix == 'co') and KEYS[2] or KEYS[3]
  out[#out + 1] = redis.call('ZSCORE', anchor_key, sku) or '0'
  out[#out + 1] = redis.call('ZRANGE', KEYS[3 + (i + 1) / 2], 0, -1, 'WITHSCORES')
end
return out
