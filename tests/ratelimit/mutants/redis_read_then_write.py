"""Redis token bucket without Lua: read with HMGET, decide in Python, write with HSET (two round trips).

Sequentially it decides exactly like the reference (and sets a TTL), but two requests can read the
same state before either writes, so concurrent requests spend the same tokens. Expected to fail:
the concurrency check (hidden: 100 threads, one key, exactly ``limit`` must pass).
"""

# %% grade_id: lua_token_bucket
import math

TOKEN_BUCKET_LUA = "return {0, 0, '0', '0', '0'}"  # unused: acquire below does the work in Python


class LuaTokenBucket(RedisLimiter):
    """Token bucket on Redis: HMGET, decide in Python, HSET."""

    algorithm = "lua_token_bucket"
    uses_burst = True
    lua_body = TOKEN_BUCKET_LUA

    def acquire(self, key: str, cost: int = 1) -> Decision:
        k = self.keys_for(key)[0]
        if self.clock is None:
            seconds, micros = self.client.time()  # Redis server time, as the prelude would
            now = int(seconds) + int(micros) / 1e6
        else:
            now = self.clock.now()
        rate = self.limit / self.period
        tokens, last = self.client.hmget(k, "tokens", "ts")
        tokens = float(self.capacity) if tokens is None else float(tokens)
        last = now if last is None else float(last)
        tokens = min(float(self.capacity), tokens + max(0.0, now - last) * rate)
        allowed = tokens >= cost
        if allowed:
            tokens -= cost
        self.client.hset(k, mapping={"tokens": repr(tokens), "ts": repr(now)})
        reset = (self.capacity - tokens) / rate
        self.client.pexpire(k, math.ceil((reset + self.period) * 1000))
        return Decision(allowed, self.capacity, math.floor(tokens), reset, 0.0 if allowed else (cost - tokens) / rate)
