-- Counts a card's authorizations in the current window.
-- ARGV: 3 card id, 4 window ms. Returns the count including this one.
local window = tonumber(ARGV[4])
local k = base .. ':vel:' .. ARGV[3] .. ':' .. fmt(math.floor(now / window))
local n = redis.call('INCR', k)
if n == 1 then redis.call('PEXPIRE', k, window * 2) end
return n
