-- ARGV: 3 id, 4 customer id, 5 balance id, 6 type, 7 status, 8 pan_enc,
--       9 pan_hash, 10 bin, 11 last4, 12 expiry YYMM, 13 cvv_enc, 14 copy_of, 15 delivery JSON,
--       16 delivery_state ('' or ORDERED: a plastic waiting for the bureau),
--       17 program id ('': the partner's default program)
local id, cid, bid, panh, copy = ARGV[3], ARGV[4], ARGV[5], ARGV[9], ARGV[14]
local c = row('customers', cid)
if c == nil then return fail('CUSTOMER_NOT_FOUND') end
local b = row('user_balances', bid)
if b == nil or b.customer_id ~= cid then return fail('BALANCE_NOT_FOUND') end
if b.state ~= 'ACTIVE' then return fail('BALANCE_NOT_ACTIVE') end
if redis.call('EXISTS', rkey('cards', id)) == 1 then return fail('ALREADY_EXISTS') end
local pk = base .. ':pan:' .. panh
if copy == '' then
  if redis.call('EXISTS', pk) == 1 then return fail('PAN_EXISTS') end
else
  local orig = row('cards', copy)
  if orig == nil or orig.status == 'REMOVED' then return fail('CARD_NOT_FOUND') end
end
local cols = { 'customer_id', cid, 'balance_id', bid, 'type', ARGV[6], 'status', ARGV[7], 'lock_reason', '0',
  'lock_source', '', 'pan_enc', ARGV[8], 'pan_hash', panh, 'bin', ARGV[10], 'last4', ARGV[11], 'expiry', ARGV[12],
  'cvv_enc', ARGV[13], 'pin_verifier', '', 'pin_tries', '0', 'copy_of', copy, 'delivery', ARGV[15], 'created_at', fmt(now),
  'delivery_state', ARGV[16] or '', 'program_id', ARGV[17] or '' }
newrow('cards', id, cols)
if copy == '' then redis.call('SET', pk, id) end
redis.call('SADD', base .. ':balcards:' .. bid, id)
emit('card_create', '')
return 'OK'
