-- Activates a linked physical card. When it replaces another card that was
-- kept working until now, that card is locked with reason 8 in the same
-- step (unless it is removed or already locked irreversibly).
-- ARGV: 3 id, 4 lock source for the replaced card.
-- Returns the id of the card locked now, or ''.
local id = ARGV[3]
local c = row('cards', id)
if c == nil then return missing('CARD_NOT_FOUND') end
if c.status == 'REMOVED' then return fail('CARD_REMOVED') end
if c.type ~= 'PHYSICAL' or c.status ~= 'LINKED' then return fail('INVALID_TRANSITION') end
local old = nil
if (c.replaces or '') ~= '' then
  old = row('cards', c.replaces)
end
setf('cards', id, 'status', 'ACTIVE')
local locked = ''
local irreversible = { [1] = true, [2] = true, [5] = true, [8] = true }
if old ~= nil and old.status ~= 'REMOVED' and not irreversible[int(old.lock_reason)] then
  setf('cards', c.replaces, 'lock_reason', '8')
  setf('cards', c.replaces, 'lock_source', ARGV[4])
  if (old.lock_ref or '') ~= '' then setf('cards', c.replaces, 'lock_ref', '') end
  locked = c.replaces
end
if locked ~= '' then
  emit('card_activate', lock_reasons[8])
else
  emit('card_activate', '')
end
return locked
