-- Stores and journals a decline the engine decided before asking for funds
-- (card locked, expired, wrong PIN ...). When the key already holds an
-- answer (an earlier approval or decline) that answer is returned unchanged.
-- ARGV: 3 idem key, 4 amount, 5 reason, 6 idem ttl ms, 7 meta
-- Returns {reason, hold id, approved, available, approval code, duplicate}
local key, amount, reason = ARGV[3], tonumber(ARGV[4]), ARGV[5]
local prev = idem_get(key, amount)
if prev == 'MISMATCH' then return fail('IDEMPOTENCY_MISMATCH') end
if prev then
  return { prev.reason or '', prev.hold or '', prev.approved or '0', prev.available or '0', prev.approval or '', 1 }
end
idem_put(key, tonumber(ARGV[6]), { amount = fmt(amount), reason = reason, approved = '0', kind = 'decline' })
emit('decline', reason, ARGV[7])
return { reason, '', '0', '0', '', 0 }
