-- Releases an open hold fully or partly (reversal, partial reversal DE95),
-- or, with posted allowed, gives back what a financial transaction (0200) or
-- a forced post already posted. A fully released hold is closed; releasing
-- more than remains is refused.
-- ARGV: 3 hold id, 4 amount (0 = everything that remains), 5 posted allowed 0/1,
--       6 idem key, 7 idem ttl ms, 8 meta, 9 reason
-- Returns {released, user available, hold state, duplicate}
local hid, amount, posted_ok, key = ARGV[3], tonumber(ARGV[4]), ARGV[5] == '1', ARGV[6]
local prev = idem_get(key, amount)
if prev == 'MISMATCH' then return fail('IDEMPOTENCY_MISMATCH') end
if prev then return { prev.released, prev.available, prev.state, 1 } end
if amount == nil or amount < 0 then return fail('INVALID_AMOUNT') end
local h = row('holds', hid)
if h == nil then return fail('HOLD_NOT_FOUND') end
local u = row('user_balances', h.balance_id)
if u == nil then return missing('NOT_FOUND') end
local state
if h.state == 'OPEN' then
  local remaining = int(h.amount) - int(h.captured) - int(h.released)
  if amount == 0 then amount = remaining end
  if amount > remaining then return fail('AMOUNT_EXCEEDS_HOLD') end
  release_held(h, amount)
  state = 'OPEN'
  if amount == remaining then
    state = 'VOIDED'
    setf('holds', hid, 'closed_ms', fmt(now))
    redis.call('ZREM', base .. ':holds:open', hid)
  end
elseif h.state == 'CAPTURED' and posted_ok then
  local captured = int(h.captured)
  if amount == 0 then amount = captured end
  if amount > captured then return fail('AMOUNT_EXCEEDS_HOLD') end
  unpost(h, amount)
  addf('holds', hid, 'captured', -amount)
  state = 'CAPTURED'
  if amount == captured then state = 'VOIDED' end
elseif h.state == 'REFUNDED' and posted_ok then
  -- Reversal of a refund: take the credit back (it may leave the balance
  -- below zero when the user already spent it; the network decided).
  local credited = int(h.amount) - int(h.released)
  if amount == 0 then amount = credited end
  if amount > credited then return fail('AMOUNT_EXCEEDS_HOLD') end
  addf('user_balances', h.balance_id, 'available', -amount)
  fund(u.currency, -amount)
  state = 'REFUNDED'
  if amount == credited then state = 'VOIDED' end
  local after = fmt(int(u.available) - amount)
  addf('holds', hid, 'released', amount)
  if state ~= h.state then setf('holds', hid, 'state', state) end
  if state ~= 'OPEN' then retire(hid, ARGV[7]) end
  idem_put(key, tonumber(ARGV[7]), { amount = ARGV[4], released = fmt(amount), available = after, state = state, kind = 'void' })
  emit('void', ARGV[9] or 'REVERSAL_ACCEPTED', ARGV[8])
  return { fmt(amount), after, state, 0 }
else
  return fail('HOLD_CLOSED')
end
addf('holds', hid, 'released', amount)
if state ~= h.state then setf('holds', hid, 'state', state) end
if state ~= 'OPEN' then retire(hid, ARGV[7]) end
local after = fmt(int(u.available) + amount)
idem_put(key, tonumber(ARGV[7]), { amount = ARGV[4], released = fmt(amount), available = after, state = state, kind = 'void' })
emit('void', ARGV[9] or 'REVERSAL_ACCEPTED', ARGV[8])
return { fmt(amount), after, state, 0 }
