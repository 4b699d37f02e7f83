-- Serve a retained churn model version and hold it there (ARGV[1] the version), or release the hold and
-- serve the newest retained version (ARGV[1] empty). Scorers pick the served snapshot up within a second.
-- KEYS[1] served snapshot, KEYS[2] retained snapshots (hash: version -> snapshot), KEYS[3] held version.
-- Returns the version now served, or nil when that version (or, releasing, any version) is not retained.
local version = ARGV[1]
if version == '' then
  for _, candidate in ipairs(redis.call('HKEYS', KEYS[2])) do
    if version == '' or tonumber(candidate) > tonumber(version) then
      version = candidate
    end
  end
  if version == '' then
    return nil
  end
  redis.call('DEL', KEYS[3])
else
  if redis.call('HEXISTS', KEYS[2], version) == 0 then
    return nil
  end
  redis.call('SET', KEYS[3], version)
end
redis.call('SET', KEYS[1], redis.call('HGET', KEYS[2], version))
return version
