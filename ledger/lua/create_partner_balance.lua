-- ARGV: 3 id, 4 type (DEPOSIT/CREDIT), 5 currency, 6 low_threshold
local id, typ, cur = ARGV[3], ARGV[4], ARGV[5]
if row('partners', pid) == nil then return fail('PARTNER_NOT_FOUND') end
local idx = base .. ':pbalcur:' .. typ .. ':' .. cur
if redis.call('EXISTS', idx) == 1 or redis.call('EXISTS', rkey('partner_balances', id)) == 1 then
  return fail('ALREADY_EXISTS')
end
newrow('partner_balances', id, {
  'type', typ,
  'currency', cur,
  'available', '0',
  'reserved', '0',
  'settled', '0',
  'low_threshold', ARGV[6],
  'state', 'ACTIVE',
  'created_at', fmt(now),
})
redis.call('SET', idx, id)
emit('partner_balance_create', '')
return 'OK'
