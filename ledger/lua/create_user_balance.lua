-- ARGV: 3 id, 4 customer id, 5 currency
local id, cid, cur = ARGV[3], ARGV[4], ARGV[5]
local c = row('customers', cid)
if c == nil then return fail('CUSTOMER_NOT_FOUND') end
if c.kyc_status ~= 'VERIFIED' then return fail('KYC_NOT_VERIFIED') end
if redis.call('EXISTS', rkey('user_balances', id)) == 1 then return fail('ALREADY_EXISTS') end
newrow('user_balances', id, {
  'customer_id', cid,
  'currency', cur,
  'available', '0',
  'held', '0',
  'posted', '0',
  'state', 'ACTIVE',
  'created_at', fmt(now),
})
redis.call('SADD', base .. ':custbals:' .. cid, id)
emit('user_balance_create', '')
return 'OK'
