-- Reply: {allowed, count, seconds to the next window}; Python derives the rest (memory.fixed_window_outcome).
local window = math.floor(now / period)
local s = redis.call('HMGET', KEYS[1], 'w', 'count')
local count = 0
if tonumber(s[1]) == window then count = tonumber(s[2]) end
local until_next = (window + 1) * period - now
local allowed = 0
if count + cost <= limit then
  allowed = 1
  if count == 0 then
    redis.call('HSET', KEYS[1], 'w', window, 'count', cost)
    expire(KEYS[1], until_next, period)
  else
    redis.call('HINCRBY', KEYS[1], 'count', cost)
  end
  count = count + cost
end
return {allowed, count, f(until_next)}
