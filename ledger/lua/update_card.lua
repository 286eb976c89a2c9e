-- Moves a card through its life cycle and/or sets columns.
-- ARGV: 3 id, 4 allowed current statuses (comma separated, '' = any but REMOVED),
--       5 new status ('' = unchanged), 6 event type, 7.. column/value pairs
-- Returns the previous status.
local id, allowed, to = ARGV[3], ARGV[4], ARGV[5]
local c = row('cards', id)
if c == nil then return fail('CARD_NOT_FOUND') end
if c.status == 'REMOVED' then return fail('CARD_REMOVED') end
if allowed ~= '' and not string.find(',' .. allowed .. ',', ',' .. c.status .. ',', 1, true) then
  return fail('INVALID_TRANSITION')
end
local settable = { cvv_enc = true, pin_verifier = true, pin_tries = true, delivery = true, expiry = true,
  delivery_state = true }
for i = 7, #ARGV, 2 do
  if not settable[ARGV[i]] then return fail('INVALID_COLUMN') end
end
if to ~= '' and to ~= c.status then setf('cards', id, 'status', to) end
for i = 7, #ARGV, 2 do setf('cards', id, ARGV[i], ARGV[i + 1]) end
emit(ARGV[6], '')
return c.status
