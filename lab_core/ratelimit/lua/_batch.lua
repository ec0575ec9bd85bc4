-- Several limiters in one script, in the order given, stopping at the first rejection: one round
-- trip for all of a request's rules, and no other client's script runs between them.
-- ARGV, for each limiter in turn: algorithm, number of its KEYS, then its five prelude arguments.
local out, k, a = {}, 1, 1
while a <= #ARGV do
  local algorithm, nkeys = ARGV[a], tonumber(ARGV[a + 1])
  local keys = {}
  for j = 1, nkeys do keys[j] = KEYS[k]; k = k + 1 end
  local reply = run[algorithm](keys, {ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], ARGV[a + 5], ARGV[a + 6]})
  out[#out + 1] = reply
  a = a + 7
  if reply[1] == 0 then break end
end
return out
