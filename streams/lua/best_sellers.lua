-- The top N members of each sorted set, with every member tied with the N-th (ZREVRANGE alone would cut a
-- tie at N by reverse name order; the caller breaks ties by name, ascending, like every item ranking).
-- ARGV[1] = N, ARGV[2...] = full key names. Returns one {member, score, ...} array per key.
local n = tonumber(ARGV[1])
local out = {}
for i = 2, #ARGV do
  local last = redis.call('ZREVRANGE', ARGV[i], n - 1, n - 1, 'WITHSCORES')
  if #last == 0 then
    out[#out + 1] = redis.call('ZREVRANGE', ARGV[i], 0, -1, 'WITHSCORES')
  else
    out[#out + 1] = redis.call('ZREVRANGEBYSCORE', ARGV[i], '+inf', last[2], 'WITHSCORES')
  end
end
return out
