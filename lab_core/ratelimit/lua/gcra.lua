local interval = period / limit
local tolerance = interval * capacity
local tat = math.max(tonumber(redis.call('GET', KEYS[1])) or now, now)
local new_tat = tat + cost * interval
local allow_at = new_tat - tolerance
local allowed, retry = 0, allow_at - now
if now >= allow_at then
  allowed = 1; retry = 0; tat = new_tat
  redis.call('SET', KEYS[1], f(tat))
end
expire(KEYS[1], tat - now, period)
return {allowed, math.max(0, math.floor((tolerance - (tat - now)) / interval)), f(tat - now), f(retry), '0'}
