-- Posts what the network already approved (stand-in advice) without a funds
-- check: balances may go below zero. Creates a CAPTURED hold record so a
-- later reversal finds it.
-- ARGV: 3 balance id, 4 card id, 5 amount, 6 idem key, 7 idem ttl ms,
--       8 hold id, 9 approval code, 10 txn type, 11 meta
-- ARGV[12]: reference key (RRN + PAN token) for the reversal fallback
-- Returns {hold id, user available, duplicate, partner balance id, partner before,
--          partner after, low threshold}
local bid, cid, amount, key = ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6]
local ttl, hid, approval, txn, meta = tonumber(ARGV[7]), ARGV[8], ARGV[9], ARGV[10], ARGV[11]
local prev = idem_get(key, amount)
if prev == 'MISMATCH' then return fail('IDEMPOTENCY_MISMATCH') end
if prev then return { prev.hold or '', prev.available or '0', 1 } end
if amount == nil or amount <= 0 then return fail('INVALID_AMOUNT') end
local u = row('user_balances', bid)
if u == nil then return missing('NOT_FOUND') end
local pbid, perr = charged_partner_balance(u.currency)
if perr == 'PARTNER_NOT_FOUND' then return fail(perr) end
addf('user_balances', bid, 'available', -amount)
addf('user_balances', bid, 'posted', amount)
local pb = cols('partner_balances', pbid, 'available', 'low_threshold')
local pbefore, pafter, thr = '0', '0', '0'
if pb then pbefore, pafter, thr = pb.available, fmt(int(pb.available) - amount), pb.low_threshold or '0' end
if pbid then
  addf('partner_balances', pbid, 'available', -amount)
  addf('partner_balances', pbid, 'settled', amount)
end
local after = fmt(int(u.available) - amount)
newrow('holds', hid, {
  'balance_id', bid,
  'card_id', cid,
  'partner_balance_id', pbid or '',
  'currency', u.currency,
  'amount', fmt(amount),
  'captured', fmt(amount),
  'released', '0',
  'state', 'CAPTURED',
  'idem_key', key,
  'approval_code', approval,
  'txn_type', txn,
  'created_ms', fmt(now),
  'closed_ms', fmt(now),
  'reference', ARGV[12] or '',
  'origin', 'force_post',
  'requested', fmt(amount),
  'approved', fmt(amount),
  'available_after', after,
})
retire(hid, ttl)
idem_put(key, ttl, { amount = fmt(amount), reason = 'ADVICE_ACCEPTED', hold = hid, approved = fmt(amount),
  available = after, approval = approval, kind = 'force_post' })
-- A second way to find the hold: the RRN + PAN reference (reversal fallback).
if ARGV[12] and ARGV[12] ~= '' then redis.call('SET', base .. ':ref:' .. ARGV[12], hid, 'PX', ttl) end
emit('force_post', 'ADVICE_ACCEPTED', meta)
return { hid, after, 0, pbid or '', pbefore, pafter, thr }
