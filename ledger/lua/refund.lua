-- Credits a user balance with money from outside (refund, processing code 20).
-- The refund is kept as a hold row in state REFUNDED so that a reversal of
-- the refund finds it (void.lua takes the credit back).
-- ARGV: 3 balance id, 4 amount, 5 idem key, 6 idem ttl ms, 7 meta, 8 hold id,
--       9 card id, 10 approval code
-- ARGV[11]: reference key (RRN + PAN token) for the reversal fallback
-- Returns {user available, duplicate, hold id}
local bid, amount, key, hid = ARGV[3], tonumber(ARGV[4]), ARGV[5], ARGV[8]
local prev = idem_get(key, amount)
if prev == 'MISMATCH' then return fail('IDEMPOTENCY_MISMATCH') end
if prev then return { prev.available, 1, prev.hold or '' } end
if amount == nil or amount <= 0 then return fail('INVALID_AMOUNT') end
local u = row('user_balances', bid)
if u == nil then return missing('NOT_FOUND') end
if exceeds(u, amount) then return fail('BALANCE_LIMIT') end
addf('user_balances', bid, 'available', amount)
fund(u.currency, amount)
local after = fmt(int(u.available) + amount)
newrow('holds', hid, {
  'balance_id', bid,
  'card_id', ARGV[9],
  'partner_balance_id', '',
  'currency', u.currency,
  'amount', fmt(amount),
  'captured', '0',
  'released', '0',
  'state', 'REFUNDED',
  'idem_key', key,
  'approval_code', ARGV[10],
  'txn_type', '20',
  'created_ms', fmt(now),
  'closed_ms', fmt(now),
  'reference', ARGV[11] or '',
  'origin', 'refund',
  'requested', fmt(amount),
  'approved', fmt(amount),
  'available_after', after,
})
retire(hid, ARGV[6])
idem_put(key, tonumber(ARGV[6]), { amount = fmt(amount), available = after, reason = 'APPROVED', hold = hid,
  approved = fmt(amount), approval = ARGV[10], kind = 'refund' })
-- A second way to find the hold: the RRN + PAN reference (reversal fallback).
if ARGV[11] and ARGV[11] ~= '' then redis.call('SET', base .. ':ref:' .. ARGV[11], hid, 'PX', tonumber(ARGV[6])) end
emit('refund', 'APPROVED', ARGV[7])
return { after, 0, hid }
