-- Reply: {allowed, tokens left}; Python derives remaining/reset/retry (memory.token_bucket_outcome).
local rate = limit / period
local s = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens, last = tonumber(s[1]), tonumber(s[2])
if tokens == nil then tokens, last = capacity, now end
tokens = math.min(capacity, tokens + math.max(0, now - last) * rate)
local allowed = 0
if tokens >= cost then tokens = tokens - cost; allowed = 1 end
local left = f(tokens)
redis.call('HSET', KEYS[1], 'tokens', left, 'ts', f(now))
-- A rejection only refills, which shortens the time to full: the TTL already set still covers it.
if allowed == 1 then expire(KEYS[1], (capacity - tokens) / rate, period) end
return {allowed, left}
