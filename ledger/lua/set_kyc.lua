-- ARGV: 3 customer id, 4 status
local c = row('customers', ARGV[3])
if c == nil then return fail('NOT_FOUND') end
if c.kyc_status == ARGV[4] then return 'OK' end
setf('customers', ARGV[3], 'kyc_status', ARGV[4])
emit('customer_kyc', '')
return 'OK'
