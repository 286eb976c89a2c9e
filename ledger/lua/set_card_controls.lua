-- Sets a card's own spend controls (JSON; '' hands the card back to its
-- program's). The card's version moves, so a card read before is read again.
-- ARGV: 3 card id, 4 controls, 5 the controls the caller saw in force
--       (compared when not '-': a customer's tightening is checked against
--       what was in force, so a change made meanwhile fails CARD_CHANGED)
-- Returns the card's version after.
local id = ARGV[3]
local c = cols('cards', id, 'status', 'controls', 'program_id')
if c == nil then return fail('CARD_NOT_FOUND') end
if c.status == 'REMOVED' then return fail('CARD_REMOVED') end
if ARGV[5] ~= '-' then
  local cur = c.controls or ''
  if cur == '' then
    local prg = c.program_id
    if prg == nil or prg == '' then prg = 'prg_' .. pid end
    cur = redis.call('HGET', rkey('programs', prg), 'controls') or ''
  end
  if cur ~= ARGV[5] then return fail('CARD_CHANGED') end
end
setf('cards', id, 'controls', ARGV[4])
emit('card_controls', '')
return redis.call('HGET', rkey('cards', id), 'v')
