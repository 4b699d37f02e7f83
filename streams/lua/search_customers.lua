-- One page of customers matching a search, and how many match (commit_batch.lua keeps the index).
-- ARGV: prefix, sort ("value" | "churn"), min, max (scores of the sort order), offset, limit, filters...
-- where each filter is a set key under the prefix (idx:band:<band>, idx:segment:<id>).
-- Without filters the sorted set is read directly; with them, ZINTERSTORE into a scratch key that
-- only lives inside this script (weights 0 for the sets: the sort order's score is kept).
local prefix, sort, min, max = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local offset, limit = tonumber(ARGV[5]), tonumber(ARGV[6])
local source = prefix .. 'idx:' .. sort
if #ARGV > 6 then
  local scratch = prefix .. 'idx:scratch'
  local args = {scratch, #ARGV - 5, source}
  for i = 7, #ARGV do
    table.insert(args, prefix .. ARGV[i])
  end
  table.insert(args, 'WEIGHTS')
  table.insert(args, '1')
  for i = 7, #ARGV do
    table.insert(args, '0')
  end
  redis.call('ZINTERSTORE', unpack(args))
  source = scratch
end
local total = redis.call('ZCOUNT', source, min, max)
local page = redis.call('ZREVRANGEBYSCORE', source, max, min, 'WITHSCORES', 'LIMIT', offset, limit)
if source ~= prefix .. 'idx:' .. sort then
  redis.call('DEL', source)
end
return {total, page}
