local rate = limit / period
local s = redis.call('HMGET', KEYS[1], 'level', 'ts')
local level, last = tonumber(s[1]), tonumber(s[2])
if level == nil then level, last = 0, now end
level = math.max(0, level - math.max(0, now - last) * rate)
local allowed, delay, retry = 0, 0, (level + cost - capacity) / rate
if level + cost <= capacity then
  allowed = 1; delay = level / rate; retry = 0; level = level + cost
end
redis.call('HSET', KEYS[1], 'level', f(level), 'ts', f(now))
expire(KEYS[1], level / rate, period)
return {allowed, math.floor(capacity - level), f(level / rate), f(retry), f(delay)}
