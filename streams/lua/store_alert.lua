-- Store an alert once: its hash (status, webhook state) and an entry in the bounded stream; an alert is also
-- indexed under each customer it names (a customer alert's customer, an aggregate alert's most affected
-- customers) so that an erasure can find it.
-- KEYS[1] alert hash, KEYS[2] alert stream, KEYS[3] stats hash, KEYS[4..] the named customers' alert indexes
-- ARGV[1] alert id, ARGV[2] alert JSON, ARGV[3] received (ms), ARGV[4] webhook state of a new alert,
-- ARGV[5] stream length (approximate trim), ARGV[6] retention of the hash (seconds), ARGV[7] prefix
-- Returns the webhook state of an alert already stored (a re-sent alert), or false for a new one.
local known = redis.call('HGET', KEYS[1], 'webhook')
if known then
  redis.call('HINCRBY', KEYS[3], 'duplicates', 1)
  return known
end
redis.call('HSET', KEYS[1], 'alert', ARGV[2], 'status', 'open', 'webhook', ARGV[4], 'received_ms', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[6])
local entry = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*', 'id', ARGV[1], 'alert', ARGV[2])
for i = 4, #KEYS do
  if KEYS[i] ~= '' then
    redis.call('SADD', KEYS[i], string.sub(KEYS[1], string.len(ARGV[7]) + 1) .. ' ' .. entry)
    redis.call('EXPIRE', KEYS[i], ARGV[6])
  end
end
redis.call('HINCRBY', KEYS[3], 'stored', 1)
return false
