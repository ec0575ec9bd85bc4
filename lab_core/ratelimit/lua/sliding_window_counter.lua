local window = math.floor(now / period)
local s = redis.call('HMGET', KEYS[1], 'w', 'prev', 'curr')
local stored = tonumber(s[1]) or window
local prev, curr = tonumber(s[2]) or 0, tonumber(s[3]) or 0
if window == stored + 1 then prev, curr = curr, 0
elseif window ~= stored then prev, curr = 0, 0 end
local start = window * period
local estimate = prev * ((period - (now - start)) / period) + curr
local allowed, retry = 0, 0
if estimate + cost <= limit then
  allowed = 1; curr = curr + cost; estimate = estimate + cost
else
  local ready
  if curr + cost <= limit and prev > 0 then
    ready = start + period * (1 - (limit - curr - cost) / prev)
  else
    ready = start + period + period * math.max(0, 1 - (limit - cost) / curr)
  end
  retry = math.max(0, ready - now)
end
redis.call('HSET', KEYS[1], 'w', f(window), 'prev', f(prev), 'curr', f(curr))
local reset = 0
if curr > 0 then reset = start + 2 * period - now elseif prev > 0 then reset = start + period - now end
expire(KEYS[1], reset, period)
return {allowed, math.max(0, math.floor(limit - estimate)), f(reset), f(retry), '0'}
