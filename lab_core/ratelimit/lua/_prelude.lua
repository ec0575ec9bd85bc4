-- Shared by every limiter script. ARGV: now ('' = use Redis server time), limit, period, capacity, cost.
-- Redis server time is the single time base for all API servers sharing this Redis: client clocks drift.
local function now_s()
  if ARGV[1] ~= '' then return tonumber(ARGV[1]) end
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
-- %.17g round-trips a double exactly; tostring() keeps only 14 digits and would drift.
local function f(x) return string.format('%.17g', x) end
-- Idle keys vanish once they could hold nothing but a full quota, plus one period of slack.
local function expire(key, seconds, period)
  redis.call('PEXPIRE', key, math.ceil((seconds + period) * 1000))
end
local now = now_s()
local limit, period = tonumber(ARGV[2]), tonumber(ARGV[3])
local capacity, cost = tonumber(ARGV[4]), tonumber(ARGV[5])
