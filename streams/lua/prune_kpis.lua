-- Drop KPI buckets that fell out of retention, carrying what the base of alive customers needs.
-- KEYS: none (single-node). ARGV[1] = prefix, ARGV[2..] = day bucket keys (full names) to drop,
-- then '--', then week/month bucket keys to drop. Idempotent: a key already dropped counts nothing.
local prefix = ARGV[1]
local base = prefix .. 'kpi:base'
local i = 2
while ARGV[i] ~= '--' do
  local key = ARGV[i]
  local row = redis.call('HMGET', key, 'new_buyers', 'reactivated', 'churned')
  local change = (tonumber(row[1]) or 0) + (tonumber(row[2]) or 0) - (tonumber(row[3]) or 0)
  if redis.call('DEL', key) == 1 and change ~= 0 then
    redis.call('HINCRBY', base, 'alive', change)
  end
  i = i + 1
end
for j = i + 1, #ARGV do
  redis.call('DEL', ARGV[j])
end
return i - 2
