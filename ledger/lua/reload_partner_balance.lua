-- ARGV: 3 id, 4 amount, 5 idem key, 6 idem ttl ms
-- Returns {available_before, available_after, low_threshold, duplicate}
local id, amount = ARGV[3], tonumber(ARGV[4])
local prev = idem_get(ARGV[5], amount)
if prev == 'MISMATCH' then return fail('IDEMPOTENCY_MISMATCH') end
local b = row('partner_balances', id)
if b == nil then return fail('NOT_FOUND') end
if prev then return { prev.before, prev.after, b.low_threshold, 1 } end
if amount == nil or amount <= 0 then return fail('INVALID_AMOUNT') end
addf('partner_balances', id, 'available', amount)
fund(b.currency, amount)
local after = int(b.available) + amount
idem_put(ARGV[5], tonumber(ARGV[6]), { amount = fmt(amount), before = b.available, after = fmt(after) })
emit('partner_balance_reload', '')
return { b.available, fmt(after), b.low_threshold, 0 }
