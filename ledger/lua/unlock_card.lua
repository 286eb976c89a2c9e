-- ARGV: 3 id. Refused for reasons 1, 2, 5 and 8. Unlocking a PIN-tries lock
-- also resets the wrong-PIN count. Returns the reason that was removed.
local id = ARGV[3]
local c = row('cards', id)
if c == nil then return fail('CARD_NOT_FOUND') end
if c.status == 'REMOVED' then return fail('CARD_REMOVED') end
local cur = int(c.lock_reason)
if cur == 0 then return fail('CARD_NOT_LOCKED') end
local irreversible = { [1] = true, [2] = true, [5] = true, [8] = true }
if irreversible[cur] then return fail('CARD_LOCK_IRREVERSIBLE') end
setf('cards', id, 'lock_reason', '0')
setf('cards', id, 'lock_source', '')
if (c.lock_ref or '') ~= '' then setf('cards', id, 'lock_ref', '') end
if int(c.pin_tries) ~= 0 then setf('cards', id, 'pin_tries', '0') end
emit('card_unlock', '')
return fmt(cur)
