local window = math.floor(now / period)
local s = redis.call('HMGET', KEYS[1], 'w', 'count')
local count = tonumber(s[2]) or 0
if tonumber(s[1]) ~= window then count = 0 end
local allowed = 0
if count + cost <= limit then count = count + cost; allowed = 1 end
redis.call('HSET', KEYS[1], 'w', f(window), 'count', f(count))
local until_next = (window + 1) * period - now
expire(KEYS[1], until_next, period)
local retry = until_next
if allowed == 1 then retry = 0 end
return {allowed, limit - count, f(until_next), f(retry), '0'}
