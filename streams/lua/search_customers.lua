-- One partition's page of customers matching a search, and how many match (commit_batch.lua keeps the index;
-- the reader merges the partitions' pages, api/customers.py).
-- KEYS[1] = the sorted set of the sort order (idx:value | idx:churn), KEYS[2] = a scratch key, KEYS[3...] =
-- filter sets (idx:band:<band>, idx:segment:<id>), all of one partition's slot.
-- ARGV: min, max (scores of the sort order), offset, limit.
-- Without filters the sorted set is read directly; with them, ZINTERSTORE into the scratch key, which only
-- lives inside this script (weights 0 for the sets: the sort order's score is kept).
local min, max = ARGV[1], ARGV[2]
local offset, limit = tonumber(ARGV[3]), tonumber(ARGV[4])
local source = KEYS[1]
if #KEYS > 2 then
  local args = {KEYS[2], #KEYS - 1, source}
  for i = 3, #KEYS do
    table.insert(args, KEYS[i])
  end
  table.insert(args, 'WEIGHTS')
  table.insert(args, '1')
  for i = 3, #KEYS do
    table.insert(args, '0')
  end
  redis.call('ZINTERSTORE', unpack(args))
  source = KEYS[2]
end
local total = redis.call('ZCOUNT', source, min, max)
local page = redis.call('ZREVRANGEBYSCORE', source, max, min, 'WITHSCORES', 'LIMIT', offset, limit)
if source ~= KEYS[1] then
  redis.call('DEL', source)
end
return {total, page}
