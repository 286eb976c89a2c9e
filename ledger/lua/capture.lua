-- Posts an open hold fully or partly and releases the rest; the hold
-- resolves once. With force (an advice the network already approved) the
-- posted amount may exceed the hold; the excess is taken without a funds check.
-- ARGV: 3 hold id, 4 amount (0 = the whole remaining hold), 5 force 0/1,
--       6 idem key, 7 idem ttl ms, 8 meta
-- Returns {captured, released, user available, duplicate, partner balance id,
--          partner before, partner after, low threshold}
local hid, amount, force, key = ARGV[3], tonumber(ARGV[4]), ARGV[5] == '1', ARGV[6]
local prev = idem_get(key, amount)
if prev == 'MISMATCH' then return fail('IDEMPOTENCY_MISMATCH') end
if prev then return { prev.captured, prev.released, prev.available, 1 } end
if amount == nil or amount < 0 then return fail('INVALID_AMOUNT') end
local h = row('holds', hid)
if h == nil then return fail('HOLD_NOT_FOUND') end
-- A completion the network already approved still posts after the hold
-- expired: the merchant is paid either way, so the user is charged, without
-- a funds check, as for a forced post.
local expired_force = h.state == 'EXPIRED' and force
if h.state ~= 'OPEN' and not expired_force then return fail('HOLD_CLOSED') end
local remaining = int(h.amount) - int(h.captured) - int(h.released)
if expired_force then remaining = 0 end
if amount == 0 then amount = remaining end
if amount > remaining and not force then return fail('AMOUNT_EXCEEDS_HOLD') end
local cap = math.min(amount, remaining)
local extra = amount - cap
local rest = remaining - cap
local u = row('user_balances', h.balance_id)
if u == nil then return missing('NOT_FOUND') end

addf('user_balances', h.balance_id, 'held', -remaining)
addf('user_balances', h.balance_id, 'posted', amount)
addf('user_balances', h.balance_id, 'available', rest - extra)
local pb = cols('partner_balances', h.partner_balance_id, 'available', 'low_threshold')
local pbefore, pafter, thr = '0', '0', '0'
if pb then pbefore, pafter, thr = pb.available, fmt(int(pb.available) + rest - extra), pb.low_threshold or '0' end
if h.partner_balance_id ~= '' then
  addf('partner_balances', h.partner_balance_id, 'reserved', -remaining)
  addf('partner_balances', h.partner_balance_id, 'settled', amount)
  addf('partner_balances', h.partner_balance_id, 'available', rest - extra)
end
addf('holds', hid, 'amount', extra)
addf('holds', hid, 'captured', amount)
addf('holds', hid, 'released', rest)
setf('holds', hid, 'state', 'CAPTURED')
setf('holds', hid, 'closed_ms', fmt(now))
retire(hid, ARGV[7])
if not expired_force then redis.call('ZREM', base .. ':holds:open', hid) end
local after = fmt(int(u.available) + rest - extra)
idem_put(key, tonumber(ARGV[7]), { amount = ARGV[4], captured = fmt(amount), released = fmt(rest), available = after, kind = 'capture' })
emit('capture', 'APPROVED', ARGV[8])
return { fmt(amount), fmt(rest), after, 0, h.partner_balance_id, pbefore, pafter, thr }
