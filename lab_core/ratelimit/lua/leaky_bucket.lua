-- Reply: {allowed, queue level before this request}; Python derives the rest (memory.leaky_bucket_outcome).
local rate = limit / period
local s = redis.call('HMGET', KEYS[1], 'level', 'ts')
local level, last = tonumber(s[1]), tonumber(s[2])
if level == nil then level, last = 0, now end
level = math.max(0, level - math.max(0, now - last) * rate)
local allowed, after = 0, level
if level + cost <= capacity then allowed = 1; after = level + cost end
redis.call('HSET', KEYS[1], 'level', f(after), 'ts', f(now))
if allowed == 1 then expire(KEYS[1], after / rate, period) end
return {allowed, f(level)}
