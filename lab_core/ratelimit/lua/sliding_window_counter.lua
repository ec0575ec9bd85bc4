-- Reply: {allowed, prev, curr before this request, now}; Python derives the rest
-- (memory.sliding_counter_outcome). A rejection writes nothing: the roll below is recomputed
-- from the stored window next time and gives the same counts.
local window = math.floor(now / period)
local s = redis.call('HMGET', KEYS[1], 'w', 'prev', 'curr')
local stored = tonumber(s[1]) or window
local prev, curr = tonumber(s[2]) or 0, tonumber(s[3]) or 0
if window == stored + 1 then prev, curr = curr, 0
elseif window ~= stored then prev, curr = 0, 0 end
local start = window * period
local estimate = prev * ((period - (now - start)) / period) + curr
local allowed = 0
if estimate + cost <= limit then
  allowed = 1
  redis.call('HSET', KEYS[1], 'w', window, 'prev', prev, 'curr', curr + cost)
  expire(KEYS[1], start + 2 * period - now, period)
end
return {allowed, prev, curr, f(now)}
