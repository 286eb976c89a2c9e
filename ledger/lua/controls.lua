-- ==== Spend controls and partner funding (docs/controls.md) ==================
-- Prepended to every script after common.lua; everything here is named
-- spend_*. A card's controls are its own (cards.controls, JSON) or, when it
-- has none, its program's (programs.controls). Window counters live in
-- <base>:spend:<card id>:<window id> (hash: amount, count); a hold records
-- the windows it charged in holds.spend ("interval=window:end_ms,..."), so
-- that a release gives the amount back to the same windows and a rebuild
-- can count them again from Postgres.

-- spend_controls returns the controls in force for a card (nil: none).
local function spend_controls(cid, prg)
  local raw = redis.call('HGET', rkey('cards', cid), 'controls')
  if (not raw or raw == '') and prg and prg ~= '' then
    raw = redis.call('HGET', rkey('programs', prg), 'controls')
  end
  if not raw or raw == '' or raw == '{}' then return nil end
  local ok, c = pcall(cjson.decode, raw)
  if not ok or type(c) ~= 'table' then error('CORRUPT_ROW: controls are not JSON') end
  return c
end

local function spend_in(list, v)
  if type(list) ~= 'table' then return false end
  for _, x in ipairs(list) do
    if x == v then return true end
  end
  return false
end

-- spend_static is the decline of the controls that need no window ('' facts
-- are absent: they pass a block list and fail an allow list), or nil.
local function spend_static(c, amount, mcc, country, channel)
  local m = tonumber(c.per_transaction_max) or 0
  if m > 0 and amount > m then return 'CONTROL_TRANSACTION_MAX' end
  if type(c.mcc_allow) == 'table' and #c.mcc_allow > 0 and not spend_in(c.mcc_allow, mcc) then
    return 'CONTROL_MCC_BLOCKED'
  end
  if mcc ~= '' and spend_in(c.mcc_block, mcc) then return 'CONTROL_MCC_BLOCKED' end
  if country ~= '' and spend_in(c.countries_block, country) then return 'CONTROL_COUNTRY_BLOCKED' end
  if channel ~= '' and spend_in(c.channels_block, channel) then return 'CONTROL_CHANNEL_BLOCKED' end
  return nil
end

local function spend_key(cid, wid) return base .. ':spend:' .. cid .. ':' .. wid end

-- spend_check checks every limit against its current window (spec, from the
-- caller: "interval=window:end_ms,..."); it returns a decline reason, or nil
-- and the windows to charge.
local function spend_check(c, cid, spec, approved)
  if type(c.limits) ~= 'table' or #c.limits == 0 then return nil, nil end
  local w = {}
  for iv, wid, e in string.gmatch(spec or '', '([%w_]+)=(%w+):(%d+)') do w[iv] = { id = wid, e = e } end
  local charge = {}
  for _, l in ipairs(c.limits) do
    local win = w[l.interval]
    if win == nil then error('SPEND_WINDOW_MISSING: no window for interval ' .. tostring(l.interval)) end
    local k = spend_key(cid, win.id)
    local cur = redis.call('HMGET', k, 'amount', 'count')
    local spent, n = int(cur[1] or nil), int(cur[2] or nil)
    local la, lc = tonumber(l.amount) or 0, tonumber(l.count) or 0
    if la > 0 and spent + approved > la then return 'CONTROL_AMOUNT_LIMIT', nil end
    if lc > 0 and n + 1 > lc then return 'CONTROL_COUNT_LIMIT', nil end
    charge[#charge + 1] = { k = k, s = l.interval .. '=' .. win.id .. ':' .. win.e, e = tonumber(win.e) }
  end
  return nil, charge
end

-- spend_charge adds an approved hold to its windows and records them on it.
-- A window's counter outlives its end by a day, then Redis drops it.
local function spend_charge(hid, charge, approved)
  if charge == nil or #charge == 0 then return end
  local spec = {}
  for _, c in ipairs(charge) do
    redis.call('HINCRBY', c.k, 'amount', approved)
    redis.call('HINCRBY', c.k, 'count', 1)
    -- Relative to the script's clock (ARGV[2]), not Redis's.
    if c.e > 0 then redis.call('PEXPIRE', c.k, math.max(1, c.e - now) + 86400000) end
    spec[#spec + 1] = c.s
  end
  setf('holds', hid, 'spend', table.concat(spec, ','))
end

-- spend_giveback takes a released amount out of the windows a hold charged
-- (the count stays: the authorization happened). A window already gone
-- (ended) is left alone.
local function spend_giveback(h, amount)
  if h == nil or amount == nil or amount <= 0 or h.spend == nil or h.spend == '' then return end
  for _, wid in string.gmatch(h.spend, '([%w_]+)=(%w+):%d+') do
    local k = spend_key(h.card_id, wid)
    if redis.call('EXISTS', k) == 1 then redis.call('HINCRBY', k, 'amount', -amount) end
  end
end

-- Every release of a hold (void, expiry, late cancel) gives its amount back.
local spend_release_held, spend_unpost = release_held, unpost
release_held = function(h, amount)
  spend_release_held(h, amount)
  spend_giveback(h, amount)
end
unpost = function(h, amount)
  spend_unpost(h, amount)
  spend_giveback(h, amount)
end

-- spend_funding checks just-in-time funding of a user balance u (id bid) by the
-- partner (real-time decisioning), charged as a reload would be: the CREDIT
-- balance pays it, or in the DEPOSIT model it is money from outside. fund is
-- an amount, or 'shortfall' for what the balance lacks of amount. Returns
-- the amount to fund (0: none) and the partner balance to charge, or nil
-- and a decline reason. Nothing is written here (spend_fund_apply does).
local function spend_funding(u, bid, fund, amount)
  local n = tonumber(fund) or 0
  if fund == 'shortfall' then n = math.max(0, amount - int(u.available)) end
  if n <= 0 then return 0, '' end
  local held = redis.call('HGET', rkey('user_balances', bid), 'held')
  if int(u.available) + int(held or nil) + n > MAX_BALANCE then return nil, 'EXCEEDS_AMOUNT_LIMIT' end
  local p = cols('partners', pid, 'funding_model')
  if p == nil then return nil, 'PARTNER_NOT_FOUND' end
  if p.funding_model ~= 'CREDIT' then return n, '' end
  local pbid = redis.call('GET', base .. ':pbalcur:CREDIT:' .. u.currency)
  if not pbid then return nil, 'INSUFFICIENT_PARTNER_FUNDS' end
  local pb = cols('partner_balances', pbid, 'available')
  if pb == nil or int(pb.available) < n then return nil, 'INSUFFICIENT_PARTNER_FUNDS' end
  return n, pbid
end

local function spend_fund_apply(bid, currency, n, pbid)
  if n <= 0 then return end
  addf('user_balances', bid, 'available', n)
  if pbid ~= '' then addf('partner_balances', pbid, 'available', -n) else fund(currency, n) end
end
-- ==== end of spend controls ==================================================
