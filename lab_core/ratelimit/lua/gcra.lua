-- Time in emission intervals: a request adds exactly `cost` to the backlog (TAT - now), so bursts
-- compare exactly with `capacity`; the 1e-9 snap drops rounding noise (see memory.GCRA).
local interval = period / limit
local now_u = now / interval
local tat = tonumber(redis.call('GET', KEYS[1])) or now_u
local backlog = math.max(0, math.floor((tat - now_u) * 1e9 + 0.5) / 1e9)
local new_backlog = backlog + cost
local allowed, retry = 0, (new_backlog - capacity) * interval
if new_backlog <= capacity then
  allowed = 1; retry = 0; backlog = new_backlog
  redis.call('SET', KEYS[1], f(now_u + backlog))
end
expire(KEYS[1], backlog * interval, period)
return {allowed, math.max(0, math.floor(capacity - backlog)), f(backlog * interval), f(retry), '0'}
