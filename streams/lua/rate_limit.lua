-- Reserve up to ARGV[3] requests from a key's rate limit, shared by every API process and replica (GCRA: the
-- token bucket written as one "theoretical arrival time"): ARGV[2] requests at once, then one per ARGV[1] µs.
-- KEYS[1] the key's theoretical arrival time (µs, Redis clock); ARGV[1] emission interval µs, ARGV[2] burst,
-- ARGV[3] requests wanted. Returns how many were granted (>= 1), or minus the µs until one would be.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local start = math.max(tonumber(redis.call('GET', KEYS[1]) or now), now)
local room = math.floor((now + burst * interval - start) / interval)
if room < 1 then
  return -math.ceil(start + interval - burst * interval - now)
end
local granted = math.min(room, tonumber(ARGV[3]))
local arrival = start + granted * interval
redis.call('SET', KEYS[1], string.format('%.0f', arrival), 'PX', math.ceil((arrival - now) / 1000) + 1)
return granted
