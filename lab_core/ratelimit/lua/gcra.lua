-- Time is counted in emission intervals: a request adds exactly `cost` to the backlog (TAT - now),
-- so bursts compare exactly with `capacity`; the 1e-9 snap drops rounding noise (see memory.GCRA).
-- Reply: {allowed, backlog before this request}; Python derives the rest (memory.gcra_outcome).
local interval = period / limit
local now_u = now / interval
local tat = tonumber(redis.call('GET', KEYS[1])) or now_u
local backlog = math.max(0, math.floor((tat - now_u) * 1e9 + 0.5) / 1e9)
local allowed = 0
if backlog + cost <= capacity then
  allowed = 1
  redis.call('SET', KEYS[1], f(now_u + backlog + cost))
  expire(KEYS[1], (backlog + cost) * interval, period)
end
return {allowed, f(backlog)}
