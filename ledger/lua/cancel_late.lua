-- Undoes an approval the switch could not deliver in time: the network was
-- answered "issuer unavailable", so the hold must not keep the funds and a
-- retransmission must get that same answer. Releases the hold fully (or
-- gives back what a 0200 posted, or takes back a refund) and rewrites the
-- stored answer, atomically.
-- ARGV: 3 idem key, 4 reason to store (ISSUER_UNAVAILABLE), 5 meta,
--       6 how long the voided hold stays in Redis (ms)
-- Returns the amount released (0 when there was nothing to undo).
local k = base .. ':idem:' .. ARGV[3]
local a = redis.call('HGETALL', k)
if #a == 0 then return 0 end
local r = {}
for i = 1, #a, 2 do r[a[i]] = a[i + 1] end
if r.reason == ARGV[4] then return 0 end
local released = 0
local hid = r.hold or ''
local h = row('holds', hid)
if h then
  local u = row('user_balances', h.balance_id)
  if u == nil then return missing('NOT_FOUND') end
  if h.state == 'OPEN' then
    released = int(h.amount) - int(h.captured) - int(h.released)
    release_held(h, released)
    redis.call('ZREM', base .. ':holds:open', hid)
  elseif h.state == 'CAPTURED' then
    released = int(h.captured)
    unpost(h, released)
    addf('holds', hid, 'captured', -released)
  elseif h.state == 'REFUNDED' then
    released = int(h.amount) - int(h.released)
    addf('user_balances', h.balance_id, 'available', -released)
    fund(u.currency, -released)
  end
  if released > 0 or h.state == 'OPEN' then
    addf('holds', hid, 'released', released)
    setf('holds', hid, 'state', 'VOIDED')
    setf('holds', hid, 'closed_ms', fmt(now))
    -- The hold no longer answers for the key (a rebuild must not bring
    -- the approval back).
    setf('holds', hid, 'idem_key', '')
    retire(hid, ARGV[6])
  end
end
redis.call('HSET', k, 'reason', ARGV[4], 'hold', '', 'approved', '0', 'approval', '')
emit('late_cancel', ARGV[4], ARGV[5])
return released
