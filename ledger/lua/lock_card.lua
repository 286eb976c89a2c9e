-- ARGV: 3 id, 4 reason 1-8, 5 source (CUSTOMER, PARTNER, ADMIN, NETWORK)
-- A card locked irreversibly keeps its reason; another reversible lock
-- replaces a reversible one. Returns the lock reason in force.
local id, reason = ARGV[3], tonumber(ARGV[4])
local c = row('cards', id)
if c == nil then return fail('CARD_NOT_FOUND') end
if c.status == 'REMOVED' then return fail('CARD_REMOVED') end
local cur = int(c.lock_reason)
local irreversible = { [1] = true, [2] = true, [5] = true, [8] = true }
if irreversible[cur] then return fail('CARD_LOCK_IRREVERSIBLE') end
if cur == reason then return fmt(cur) end
setf('cards', id, 'lock_reason', fmt(reason))
setf('cards', id, 'lock_source', ARGV[5])
emit('card_lock', lock_reasons[reason] or '')
return fmt(reason)
