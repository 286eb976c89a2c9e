-- ARGV: 3 name, 4 bin, 5 currency, 6 funding_model, 7 digital_first ('true' or '')
if redis.call('EXISTS', rkey('partners', pid)) == 1 then return fail('ALREADY_EXISTS') end
newrow('partners', pid, {
  'name', ARGV[3],
  'bin', ARGV[4],
  'currency', ARGV[5],
  'funding_model', ARGV[6],
  'created_at', fmt(now),
  'digital_first', ARGV[7] or '',
})
emit('partner_create', '')
return 'OK'
