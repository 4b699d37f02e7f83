-- Drop one partition's KPI buckets that fell out of retention, carrying what the base of alive customers needs.
-- KEYS[1] = the partition's kpi:base, KEYS[2 .. ARGV[1] + 1] = its day buckets to drop (carried into the base),
-- the other KEYS = its week/month buckets to drop. Idempotent: a key already dropped counts nothing.
local base = KEYS[1]
local carried = tonumber(ARGV[1])
for i = 2, carried + 1 do
  local key = KEYS[i]
  local row = redis.call('HMGET', key, 'new_buyers', 'reactivated', 'churned')
  local change = (tonumber(row[1]) or 0) + (tonumber(row[2]) or 0) - (tonumber(row[3]) or 0)
  if redis.call('DEL', key) == 1 and change ~= 0 then
    redis.call('HINCRBY', base, 'alive', change)
  end
end
for i = carried + 2, #KEYS do
  redis.call('DEL', KEYS[i])
end
return carried
