-- Records a PIN verification. A correct PIN resets the count; the
-- MaxTries-th consecutive wrong one locks the card with reason 6 by the
-- network. ARGV: 3 card id, 4 correct 1/0, 5 max tries, 6 meta,
-- 7 the card's version as the caller read it (0: not checked): a card
-- changed since (a new PIN) counts nothing and fails with CARD_CHANGED.
-- Returns {tries, lock reason, the card's version after}
local id, ok, max = ARGV[3], ARGV[4] == '1', tonumber(ARGV[5])
local c = row('cards', id)
if c == nil then return fail('CARD_NOT_FOUND') end
local want = ARGV[7] or '0'
if want ~= '0' and want ~= '' and c.v ~= want then return fail('CARD_CHANGED') end
local tries = int(c.pin_tries)
if ok then
  if tries == 0 then return { 0, int(c.lock_reason), int(c.v) } end
  setf('cards', id, 'pin_tries', '0')
  emit('pin_ok', '', ARGV[6])
  return { 0, int(c.lock_reason), int(c.v) + 1 }
end
tries = tries + 1
setf('cards', id, 'pin_tries', fmt(tries))
local lock = int(c.lock_reason)
if tries >= max and lock == 0 then
  setf('cards', id, 'lock_reason', '6')
  setf('cards', id, 'lock_source', 'NETWORK')
  lock = 6
end
emit('pin_wrong', 'INCORRECT_PIN', ARGV[6])
return { tries, lock, int(c.v) + 1 }
