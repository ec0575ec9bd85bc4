-- KEYS[1]: sorted set of admitted requests (member 'seq:cost', score = time); KEYS[2]: hash {sum, seq}.
local cutoff = f(now - period)
local used = tonumber(redis.call('HGET', KEYS[2], 'sum')) or 0
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', cutoff)) do
  used = used - tonumber(string.match(m, ':(%d+)$'))
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', cutoff)
local allowed, retry = 0, 0
if used + cost <= limit then
  local seq = redis.call('HINCRBY', KEYS[2], 'seq', 1)
  redis.call('ZADD', KEYS[1], f(now), seq .. ':' .. cost)
  used = used + cost
  allowed = 1
else
  local to_free, freed = used + cost - limit, 0
  -- Every entry holds at least one unit, so the oldest `to_free` entries are always enough.
  local log = redis.call('ZRANGE', KEYS[1], 0, to_free - 1, 'WITHSCORES')
  for i = 1, #log, 2 do
    freed = freed + tonumber(string.match(log[i], ':(%d+)$'))
    if freed >= to_free then retry = tonumber(log[i + 1]) + period - now; break end
  end
end
redis.call('HSET', KEYS[2], 'sum', used)
local newest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
local reset = 0
if #newest > 0 then reset = tonumber(newest[2]) + period - now end
expire(KEYS[1], reset, period)
expire(KEYS[2], reset, period)
return {allowed, limit - used, f(reset), f(retry), '0'}
