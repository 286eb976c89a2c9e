-- ARGV: 3 balance id, 4 amount, 5 idem key, 6 idem ttl ms
-- CREDIT model: charges the partner credit balance of the currency and fails
-- with nothing changed when it is short. DEPOSIT model: money from outside.
-- Returns {user_available_after, partner_balance_id, partner_before, partner_after, low_threshold, duplicate}
local id, amount = ARGV[3], tonumber(ARGV[4])
local prev = idem_get(ARGV[5], amount)
if prev == 'MISMATCH' then return fail('IDEMPOTENCY_MISMATCH') end
local u = row('user_balances', id)
if u == nil then return fail('NOT_FOUND') end
if prev then return { prev.after, prev.pbal or '', prev.pbefore or '0', prev.pafter or '0', '0', 1 } end
if amount == nil or amount <= 0 then return fail('INVALID_AMOUNT') end
if u.state ~= 'ACTIVE' then return fail('BALANCE_NOT_ACTIVE') end
if exceeds(u, amount) then return fail('BALANCE_LIMIT') end
local p = row('partners', pid)
if p == nil then return fail('PARTNER_NOT_FOUND') end
local pbid, pb = '', nil
if p.funding_model == 'CREDIT' then
  pbid = redis.call('GET', base .. ':pbalcur:CREDIT:' .. u.currency)
  if not pbid then return fail('INSUFFICIENT_PARTNER_FUNDS') end
  pb = row('partner_balances', pbid)
  if pb == nil or int(pb.available) < amount then return fail('INSUFFICIENT_PARTNER_FUNDS') end
end
addf('user_balances', id, 'available', amount)
local pbefore, pafter, thr = '0', '0', '0'
if pb then
  addf('partner_balances', pbid, 'available', -amount)
  pbefore, pafter, thr = pb.available, fmt(int(pb.available) - amount), pb.low_threshold
else
  fund(u.currency, amount)
end
local after = fmt(int(u.available) + amount)
idem_put(ARGV[5], tonumber(ARGV[6]), { amount = fmt(amount), after = after, pbal = pbid, pbefore = pbefore, pafter = pafter })
emit('user_balance_reload', '')
return { after, pbid, pbefore, pafter, thr, 0 }
