-- Releases open holds created before ARGV[3] (ms), at most ARGV[4] of them;
-- ARGV[5] is how long an expired hold stays in Redis (ms).
-- One journal entry for the batch. Returns the number expired.
local cutoff, limit = tonumber(ARGV[3]), tonumber(ARGV[4])
local ids = redis.call('ZRANGEBYSCORE', base .. ':holds:open', '-inf', cutoff, 'LIMIT', 0, limit)
local n = 0
for _, hid in ipairs(ids) do
  local h = row('holds', hid)
  if h and h.state == 'OPEN' then
    local remaining = int(h.amount) - int(h.captured) - int(h.released)
    release_held(h, remaining)
    addf('holds', hid, 'released', remaining)
    setf('holds', hid, 'state', 'EXPIRED')
    setf('holds', hid, 'closed_ms', fmt(now))
    retire(hid, ARGV[5])
    n = n + 1
  end
  redis.call('ZREM', base .. ':holds:open', hid)
end
if n > 0 then emit('expire', '') end
return n
