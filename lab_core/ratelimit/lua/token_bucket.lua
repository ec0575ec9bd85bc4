local rate = limit / period
local s = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens, last = tonumber(s[1]), tonumber(s[2])
if tokens == nil then tokens, last = capacity, now end
tokens = math.min(capacity, tokens + math.max(0, now - last) * rate)
local allowed, retry = 0, (cost - tokens) / rate
if tokens >= cost then tokens = tokens - cost; allowed = 1; retry = 0 end
redis.call('HSET', KEYS[1], 'tokens', f(tokens), 'ts', f(now))
local reset = (capacity - tokens) / rate
expire(KEYS[1], reset, period)
return {allowed, math.floor(tokens), f(reset), f(retry), '0'}
