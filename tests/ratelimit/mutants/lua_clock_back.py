"""Lua token bucket without the guard against a clock that steps back: ``tokens + (now - last) * rate``.
With Redis time that happens on a failover to a replica whose clock is behind; with an injected
clock on any correction. The bucket then loses tokens. Expected to fail: the hidden comparison with
the reference (its scenarios step the clock back).
"""

# %% grade_id: lua_token_bucket
# TOKEN_BUCKET_LUA = """ ...the body of the script, in Lua... """
TOKEN_BUCKET_LUA = """
local rate = limit / period
local s = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens, last = tonumber(s[1]), tonumber(s[2])
if tokens == nil then tokens, last = capacity, now end
tokens = math.min(capacity, tokens + (now - last) * rate)
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


class LuaTokenBucket(RedisLimiter):
    """Token bucket as one atomic Lua script: the shared prelude, then TOKEN_BUCKET_LUA.

    LuaTokenBucket(limit, period, *, clock=None, burst=None, client=None): clock=None means Redis
    server time; client=None means the lab's Redis (fakeredis in process unless REDIS_URL is set).
    """

    algorithm = "lua_token_bucket"  # names the keys: rl:lua_token_bucket:{<key>}
    uses_burst = True
    lua_body = TOKEN_BUCKET_LUA
