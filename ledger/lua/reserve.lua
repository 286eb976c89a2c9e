-- The authorization hold, atomically: idempotency key -> card guard ->
-- partner deposit check and charge (DEPOSIT model) -> user available -> held
-- (or posted when capturing at once, 0200) -> hold record -> journal entry.
-- A decline changes no balance; it is stored under the idempotency key and
-- journaled like an approval, so a retransmission gets the same answer.
-- ARGV: 3 balance id, 4 card id, 5 amount, 6 idem key, 7 idem ttl ms,
--       8 hold id, 9 approval code, 10 txn type, 11 capture 0/1,
--       12 partial approval allowed 0/1, 13 meta (JSON, journal only)
-- ARGV[14]: reference key (RRN + PAN token) for the reversal fallback
-- ARGV[15]: the card's version as the caller read it (0: not checked)
-- ARGV[16..22] spend controls and partner decision (controls.lua): 16 program
--   id, 17 window spec, 18 MCC, 19 country alpha-2, 20 channel ('' absent),
--   21 just-in-time funding (amount, 'shortfall' or ''), 22 partner's
--   partial approval cap (0: none)
-- Returns {reason, hold id, approved amount, user available, approval code,
--          duplicate 0/1, partner balance id, partner before, partner after, low threshold}
local bid, cid, amount, key = ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6]
local ttl, hid, approval, txn = tonumber(ARGV[7]), ARGV[8], ARGV[9], ARGV[10]
local capture, partial, meta = ARGV[11] == '1', ARGV[12] == '1', ARGV[13]

local prev = idem_get(key, amount)
if prev == 'MISMATCH' then return fail('IDEMPOTENCY_MISMATCH') end
if prev then
  return { prev.reason, prev.hold or '', prev.approved or '0', prev.available or '0', prev.approval or '', 1, '', '0', '0', '0' }
end
if amount == nil or amount <= 0 then return fail('INVALID_AMOUNT') end

local u = cols('user_balances', bid, 'available', 'state', 'currency')
if u == nil then return missing('NOT_FOUND') end

local function decline(reason)
  idem_put(key, ttl, { amount = fmt(amount), reason = reason, approved = '0', available = u.available, kind = 'reserve' })
  emit('decline', reason, meta)
  return { reason, '', '0', u.available, '', 0, '', '0', '0', '0' }
end

if cid ~= '' then
  local card = cols('cards', cid, 'status', 'lock_reason', 'v')
  -- The card as the caller read it (ARGV[15], 0: not checked): a card
  -- changed since is decided again on a fresh read, with nothing written.
  local want = ARGV[15] or '0'
  if want ~= '0' and want ~= '' and card ~= nil and card.v ~= want then return fail('CARD_CHANGED') end
  local refusal = card_refusal(card)
  if refusal then return decline(refusal) end
end
if u.state ~= 'ACTIVE' then return decline('DO_NOT_HONOUR') end

-- ---- spend controls: static checks, partner funding (controls.lua) ----
local spend_ctl = nil
if cid ~= '' then spend_ctl = spend_controls(cid, ARGV[16]) end
if spend_ctl then
  local r = spend_static(spend_ctl, amount, ARGV[18] or '', ARGV[19] or '', ARGV[20] or '')
  if r then return decline(r) end
end
local spend_fund, spend_fund_pb = spend_funding(u, bid, ARGV[21] or '', amount)
if spend_fund == nil then return decline(spend_fund_pb) end
local spend_avail0, spend_decline = u.available, decline
local function decline(r)
  u.available = spend_avail0
  return spend_decline(r)
end
u.available = fmt(int(u.available) + spend_fund)
-- ---- end spend controls ----
local approved, reason = amount, 'APPROVED'
local avail = int(u.available)
if avail < amount and partial and avail > 0 then approved, reason = avail, 'APPROVED_PARTIAL' end
-- ---- spend controls: partner cap, window limits (controls.lua) ----
local spend_cap = tonumber(ARGV[22] or '0') or 0
if spend_cap > 0 and spend_cap < approved then approved, reason = spend_cap, 'APPROVED_PARTIAL' end
local spend_windows = nil
if spend_ctl then
  local r
  r, spend_windows = spend_check(spend_ctl, cid, ARGV[17], approved)
  if r then return decline(r) end
end
-- ---- end spend controls ----

local pbid, perr = charged_partner_balance(u.currency)
if perr then return decline(perr) end
local pb = nil
if pbid then
  pb = cols('partner_balances', pbid, 'available', 'low_threshold')
  if pb == nil or int(pb.available) < approved then return decline('INSUFFICIENT_PARTNER_FUNDS') end
end
if avail < approved then return decline('INSUFFICIENT_USER_FUNDS') end

-- All checks passed: write.
local state, captured = 'OPEN', 0
addf('user_balances', bid, 'available', -approved)
if capture then
  addf('user_balances', bid, 'posted', approved)
  state, captured = 'CAPTURED', approved
else
  addf('user_balances', bid, 'held', approved)
end
local pbefore, pafter, thr = '0', '0', '0'
if pb then
  addf('partner_balances', pbid, 'available', -approved)
  if capture then addf('partner_balances', pbid, 'settled', approved)
  else addf('partner_balances', pbid, 'reserved', approved) end
  pbefore, pafter, thr = pb.available, fmt(int(pb.available) - approved), pb.low_threshold
end
local after = fmt(avail - approved)
newrow('holds', hid, {
  'balance_id', bid,
  'card_id', cid,
  'partner_balance_id', pbid or '',
  'currency', u.currency,
  'amount', fmt(approved),
  'captured', fmt(captured),
  'released', '0',
  'state', state,
  'idem_key', key,
  'approval_code', approval,
  'txn_type', txn,
  'created_ms', nows,
  'closed_ms', capture and nows or '0',
  'reference', ARGV[14] or '',
  'origin', 'reserve',
  'requested', fmt(amount),
  'approved', fmt(approved),
  'available_after', after,
})
if capture then retire(hid, ttl) else redis.call('ZADD', base .. ':holds:open', nows, hid) end
-- ---- spend controls: fund, charge the windows (controls.lua) ----
spend_fund_apply(bid, u.currency, spend_fund, spend_fund_pb)
spend_charge(hid, spend_windows, approved)
-- ---- end spend controls ----
idem_put(key, ttl, { amount = fmt(amount), reason = reason, hold = hid, approved = fmt(approved),
  available = after, approval = approval, kind = 'reserve' })
-- A second way to find the hold: the RRN + PAN reference (reversal fallback).
if ARGV[14] and ARGV[14] ~= '' then redis.call('SET', base .. ':ref:' .. ARGV[14], hid, 'PX', ttl) end
emit(capture and 'financial' or 'reserve', reason, meta)
return { reason, hid, fmt(approved), after, approval, 0, pbid or '', pbefore, pafter, thr }
