-- ARGV: 3 id, 4 external_id, 5 first_name, 6 last_name, 7 email, 8 phone
local id = ARGV[3]
if row('partners', pid) == nil then return fail('PARTNER_NOT_FOUND') end
if redis.call('EXISTS', rkey('customers', id)) == 1 then return fail('ALREADY_EXISTS') end
newrow('customers', id, {
  'external_id', ARGV[4],
  'first_name', ARGV[5],
  'last_name', ARGV[6],
  'email', ARGV[7],
  'phone', ARGV[8],
  'kyc_status', 'NONE',
  'created_at', fmt(now),
})
emit('customer_create', '')
return 'OK'
