-- ARGV: 3 id. Removal is final; the PAN index stays so the card declines
-- as removed (same wire code as unknown) instead of vanishing.
local id = ARGV[3]
local c = row('cards', id)
if c == nil then return fail('CARD_NOT_FOUND') end
if c.status == 'REMOVED' then return fail('CARD_REMOVED') end
setf('cards', id, 'status', 'REMOVED')
emit('card_remove', '')
return 'OK'
