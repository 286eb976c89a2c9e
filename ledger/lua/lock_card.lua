-- ARGV: 3 id, 4 reason 1-8, 5 source (CUSTOMER, PARTNER, ADMIN, NETWORK,
-- ACQUIRER), 6 the requester's reference ('' when none).
-- A card locked irreversibly keeps its reason; another reversible lock
-- replaces a reversible one. Locking again with the reason in force only
-- records a new source or reference. Returns the lock reason in force.
local id, reason, source, ref = ARGV[3], tonumber(ARGV[4]), ARGV[5], ARGV[6] or ''
local c = row('cards', id)
if c == nil then return fail('CARD_NOT_FOUND') end
if c.status == 'REMOVED' then return fail('CARD_REMOVED') end
local cur = int(c.lock_reason)
local irreversible = { [1] = true, [2] = true, [5] = true, [8] = true }
if irreversible[cur] then return fail('CARD_LOCK_IRREVERSIBLE') end
if cur == reason and (c.lock_source or '') == source and (c.lock_ref or '') == ref then return fmt(cur) end
if cur ~= reason then setf('cards', id, 'lock_reason', fmt(reason)) end
setf('cards', id, 'lock_source', source)
if (c.lock_ref or '') ~= ref then setf('cards', id, 'lock_ref', ref) end
emit('card_lock', lock_reasons[reason] or '')
return fmt(reason)
