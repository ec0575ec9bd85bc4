"""Lua token bucket fed the API server's clock (``time.time()``) instead of Redis server time.

With one server it is right. With several, whose clocks drift apart, a server whose clock runs
ahead sees a refill on every request: two servers ten minutes apart together admit far more than
one bucket. Expected to fail: the clock-skew check (hidden).
"""

# %% grade_id: lua_token_bucket
# TOKEN_BUCKET_LUA = """ ...the body of the script, in Lua... """
TOKEN_BUCKET_LUA = """
local rate = limit / period
local s = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens, last = tonumber(s[1]), tonumber(s[2])
if tokens == nil then tokens, last = capacity, now end
tokens = math.min(capacity, tokens + math.max(0, now - last) * rate)
local allowed, retry = 0, (cost - tokens) / rate
if tokens >= cost then
  tokens = tokens - cost
  allowed, retry = 1, 0
end
redis.call('HSET', KEYS[1], 'tokens', f(tokens), 'ts', f(now))
local reset = (capacity - tokens) / rate
expire(KEYS[1], reset, period)
return {allowed, math.floor(tokens), f(reset), f(retry), '0'}
"""


import time


class LuaTokenBucket(RedisLimiter):
    """Token bucket as one atomic Lua script, timed by this API server's clock."""

    algorithm = "lua_token_bucket"
    uses_burst = True
    lua_body = TOKEN_BUCKET_LUA

    def acquire(self, key: str, cost: int = 1) -> Decision:
        now = self.clock.now() if self.clock is not None else time.time()  # "the current time"
        args = [repr(float(now)), self.limit, repr(self.period), self.capacity, cost]
        allowed, remaining, reset, retry, delay = self._script(keys=self.keys_for(key), args=args)
        return Decision(bool(int(allowed)), self.capacity, int(remaining), float(reset), float(retry))
