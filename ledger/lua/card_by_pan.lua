-- One round trip for the authorization path: the card a PAN lookup token
-- points at, its balance's currency, and (for a copy) nothing else: copies
-- are not indexed, the original carries the state.
-- ARGV: 3 pan hash. Returns the card row flattened, plus 'balance_currency'.
local id = redis.call('GET', base .. ':pan:' .. ARGV[3])
if not id then
  -- The BIN routed here, so the partner must exist; if it does not, Redis
  -- lost its state (a restart without persistence) and "unknown card"
  -- would be a wrong answer.
  if redis.call('EXISTS', rkey('partners', pid)) == 0 then return fail('PARTNER_NOT_FOUND') end
  return {}
end
local flat = redis.call('HGETALL', rkey('cards', id))
if #flat == 0 then return {} end
local cur = redis.call('HGET', rkey('user_balances', redis.call('HGET', rkey('cards', id), 'balance_id') or ''), 'currency')
flat[#flat + 1] = 'balance_currency'
flat[#flat + 1] = cur or ''
return flat
