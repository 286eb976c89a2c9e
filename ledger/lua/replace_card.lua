-- Replaces a card with a new one of the same type under the same balance,
-- in one step: the new card, and on the old one replaced_by and, unless the
-- old card is to keep working until the new one is activated (a physical
-- replacement asked with keep_old), the lock with reason 8. An old card
-- already locked irreversibly (1, 2, 5, 8: e.g. reported lost) keeps its
-- reason. A digital-first copy is not replaced here: it shares its virtual
-- card's PAN and state, so its virtual card is what gets replaced.
-- ARGV: 3 old id, 4 new id, 5 type, 6 status, 7 pan_enc, 8 pan_hash, 9 bin,
--       10 last4, 11 expiry YYMM, 12 cvv_enc, 13 delivery JSON,
--       14 delivery_state, 15 keep_old ('1' or ''), 16 lock source
-- Returns the old card's lock reason in force after.
local old, new, typ, panh = ARGV[3], ARGV[4], ARGV[5], ARGV[8]
local keep, source = ARGV[15] == '1', ARGV[16]
local o = row('cards', old)
if o == nil then return missing('CARD_NOT_FOUND') end
if o.status == 'REMOVED' then return fail('CARD_REMOVED') end
if (o.copy_of or '') ~= '' or o.type ~= typ then return fail('INVALID_TRANSITION') end
if (o.replaced_by or '') ~= '' then return fail('CARD_REPLACED') end
local b = row('user_balances', o.balance_id)
if b == nil then return fail('BALANCE_NOT_FOUND') end
if b.state ~= 'ACTIVE' then return fail('BALANCE_NOT_ACTIVE') end
if redis.call('EXISTS', rkey('cards', new)) == 1 then return fail('ALREADY_EXISTS') end
local pk = base .. ':pan:' .. panh
if redis.call('EXISTS', pk) == 1 then return fail('PAN_EXISTS') end

newrow('cards', new, { 'customer_id', o.customer_id, 'balance_id', o.balance_id, 'type', typ, 'status', ARGV[6],
  'lock_reason', '0', 'lock_source', '', 'pan_enc', ARGV[7], 'pan_hash', panh, 'bin', ARGV[9], 'last4', ARGV[10],
  'expiry', ARGV[11], 'cvv_enc', ARGV[12], 'pin_verifier', '', 'pin_tries', '0', 'copy_of', '', 'delivery', ARGV[13],
  'created_at', fmt(now), 'delivery_state', ARGV[14], 'lock_ref', '', 'replaces', old, 'replaced_by', '',
  'program_id', o.program_id or '', 'controls', o.controls or '' })
redis.call('SET', pk, new)
redis.call('SADD', base .. ':balcards:' .. o.balance_id, new)
setf('cards', old, 'replaced_by', new)
local cur = int(o.lock_reason)
local irreversible = { [1] = true, [2] = true, [5] = true, [8] = true }
local reason = ''
if not keep and not irreversible[cur] then
  setf('cards', old, 'lock_reason', '8')
  setf('cards', old, 'lock_source', source)
  if (o.lock_ref or '') ~= '' then setf('cards', old, 'lock_ref', '') end
  cur = 8
  reason = lock_reasons[8]
end
emit('card_replace', reason)
return fmt(cur)
