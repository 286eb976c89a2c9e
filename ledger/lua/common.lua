-- Shared preamble of every ledger script (prepended at load time).
-- KEYS[1] is the partner's hash-tagged base "<prefix>:{p:<pid>}"; every key a
-- script touches starts with it, so the script stays in one slot.
-- ARGV[1] is the partner id, ARGV[2] the time in milliseconds.
-- Rule: validate everything first, write after, emit the journal entry last.
local base = KEYS[1]
local pid = ARGV[1]
local now = tonumber(ARGV[2])
-- now as text, formatted once: Lua turns a number into text through
-- printf, and a script writes the time into several fields.
local nows = string.format('%d', now or 0)

local changes = {}
local touched = {}
local __journal = {}

local function rkey(t, id) return base .. ':' .. t .. ':' .. id end
-- int reads a numeric column; absent is 0, anything else that is not a
-- number is a corrupt row and fails the script before it writes.
local function int(s)
  if s == nil or s == '' then return 0 end
  local n = tonumber(s)
  if n == nil then error('CORRUPT_ROW: a numeric column holds no number') end
  return n
end
local function fmt(n) return string.format('%d', n) end
-- The largest balance (authz.MaxAmount, 10^12 - 1 minor units): what the 12
-- digits of an ISO 8583 amount can carry, so every answer can state the
-- balance it leaves. exceeds reports a user balance that a credit of amount
-- would take past it (what is held may still come back to available).
local MAX_BALANCE = 999999999999
local function exceeds(u, amount)
  return int(u.available) + int(u.held) + amount > MAX_BALANCE
end
local function fail(code) return redis.error_reply(code) end
-- missing fails for a row that is not there; when the partner itself is
-- gone, Redis lost its state (a restart without persistence), which the
-- caller must hear as "unavailable", not "not found".
local function missing(code)
  if redis.call('EXISTS', base .. ':partners:' .. pid) == 0 then return fail('PARTNER_NOT_FOUND') end
  return fail(code)
end

local function row(t, id)
  if id == nil or id == '' then return nil end
  local flat = redis.call('HGETALL', rkey(t, id))
  if #flat == 0 then return nil end
  local r = {}
  for i = 1, #flat, 2 do r[flat[i]] = flat[i + 1] end
  return r
end

-- cols reads some columns of a row (nil when the row does not exist):
-- cheaper than row() on the authorization path.
local function cols(t, id, ...)
  if id == nil or id == '' then return nil end
  local names = { 'id', ... }
  local vals = redis.call('HMGET', rkey(t, id), unpack(names))
  if not vals[1] then return nil end
  local r = {}
  for i = 2, #names do
    if vals[i] then r[names[i]] = vals[i] end
  end
  return r
end

local function change(t, id)
  local k = t .. ':' .. id
  local c = touched[k]
  if not c then
    c = { t = t, id = id, set = {}, add = {} }
    touched[k] = c
    changes[#changes + 1] = c
  end
  return c
end

-- newrow creates a row with its columns (a flat list of name, value) in
-- one HSET and records them for the journal.
local function newrow(t, id, cols)
  local c = change(t, id)
  for i = 2, #cols, 2 do
    cols[i] = tostring(cols[i])
    c.set[cols[i - 1]] = cols[i]
  end
  redis.call('HSET', rkey(t, id), 'id', id, 'partner_id', pid, unpack(cols))
end

-- retire gives a closed hold's row a lifetime in Redis (ms from now):
-- Postgres keeps every hold, Redis only as long as a late message may
-- still refer to it (the idempotency window), so memory does not grow
-- with the transaction history.
local function retire(hid, ttl)
  ttl = tonumber(ttl)
  if ttl and ttl > 0 then redis.call('PEXPIRE', rkey('holds', hid), ttl) end
end

-- setf sets a column and records it for the journal.
local function setf(t, id, field, value)
  value = tostring(value)
  redis.call('HSET', rkey(t, id), field, value)
  change(t, id).set[field] = value
end

-- addf adds a signed delta to a numeric column and records it.
local function addf(t, id, field, delta)
  if delta == 0 then return end
  local c = change(t, id)
  -- Numbers are handed to redis.call as text: Lua would format them as
  -- floating point (%.14g), which costs more.
  redis.call('HINCRBY', rkey(t, id), field, fmt(delta))
  c.add[field] = fmt(int(c.add[field]) + delta)
end

-- fund records money entering the program from outside.
local function fund(currency, amount)
  local fid = pid .. ':' .. currency
  if redis.call('EXISTS', rkey('funding', fid)) == 0 then
    newrow('funding', fid, { 'currency', currency })
  end
  addf('funding', fid, 'total_in', amount)
end

-- release_held gives amount of an open hold back: user held -> available,
-- and in the DEPOSIT model deposit reserved -> available.
local function release_held(h, amount)
  addf('user_balances', h.balance_id, 'held', -amount)
  addf('user_balances', h.balance_id, 'available', amount)
  if h.partner_balance_id ~= '' then
    addf('partner_balances', h.partner_balance_id, 'reserved', -amount)
    addf('partner_balances', h.partner_balance_id, 'available', amount)
  end
end

-- unpost gives back amount a hold posted: user posted -> available, and
-- deposit settled -> available.
local function unpost(h, amount)
  addf('user_balances', h.balance_id, 'posted', -amount)
  addf('user_balances', h.balance_id, 'available', amount)
  if h.partner_balance_id ~= '' then
    addf('partner_balances', h.partner_balance_id, 'settled', -amount)
    addf('partner_balances', h.partner_balance_id, 'available', amount)
  end
end

-- emit bumps the version of every touched row and appends the journal entry.
local function emit(typ, reason, meta)
  for _, c in ipairs(changes) do
    c.v = fmt(redis.call('HINCRBY', rkey(c.t, c.id), 'v', '1'))
    if next(c.set) == nil then c.set = nil end
    if next(c.add) == nil then c.add = nil end
  end
  local seq = redis.call('INCR', base .. ':seq')
  local ch = '[]'
  if #changes > 0 then ch = cjson.encode(changes) end
  local id = redis.call('XADD', base .. ':journal', '*', 'seq', fmt(seq), 'type', typ, 'reason', reason or '',
    'ts', nows, 'ch', ch, 'meta', meta or '')
  -- The caller gets the entry back with the script's result (the epilogue
  -- appended at load time) and commits it to Postgres before it answers.
  __journal[#__journal + 1] = { id, seq, typ, reason or '', nows, ch, meta or '' }
  return seq
end

-- Idempotency: an answer stored under a key is returned for every repeat.
-- The same key with a different amount is refused.
local function idem_get(key, amount)
  if key == nil or key == '' then return nil end
  local k = base .. ':idem:' .. key
  local flat = redis.call('HGETALL', k)
  if #flat == 0 then return nil end
  local r = {}
  for i = 1, #flat, 2 do r[flat[i]] = flat[i + 1] end
  if amount ~= nil and r.amount ~= fmt(amount) then
    return 'MISMATCH'
  end
  return r
end

local function idem_put(key, ttl, fields)
  if key == nil or key == '' then return end
  local k = base .. ':idem:' .. key
  local flat = {}
  for f, v in pairs(fields) do
    flat[#flat + 1] = f
    flat[#flat + 1] = tostring(v)
  end
  redis.call('HSET', k, unpack(flat))
  if ttl and ttl > 0 then redis.call('PEXPIRE', k, ttl) end
end

local lock_reasons = {
  'CARD_LOCKED_LOST', 'CARD_LOCKED_STOLEN', 'CARD_LOCKED_PENDING_QUERY', 'CARD_LOCKED_CONSOLIDATION',
  'CARD_LOCKED_INACTIVE', 'CARD_LOCKED_PIN_TRIES', 'CARD_LOCKED_FRAUD', 'CARD_LOCKED_REPLACED',
}

-- card_refusal is the reason a card cannot transact now, or nil.
local function card_refusal(card)
  if card == nil then return 'UNKNOWN_CARD' end
  if card.status == 'REMOVED' then return 'CARD_REMOVED' end
  local lr = int(card.lock_reason)
  if lr > 0 then return lock_reasons[lr] or 'DO_NOT_HONOUR' end
  if card.status ~= 'ACTIVE' then return 'CARD_NOT_ACTIVATED' end
  return nil
end

-- deposit returns the partner balance an authorization charges, or nil in
-- the CREDIT model.
local function charged_partner_balance(currency)
  local p = cols('partners', pid, 'funding_model')
  if p == nil then return nil, 'PARTNER_NOT_FOUND' end
  if p.funding_model ~= 'DEPOSIT' then return nil, nil end
  local id = redis.call('GET', base .. ':pbalcur:DEPOSIT:' .. currency)
  if not id then return nil, 'INSUFFICIENT_PARTNER_FUNDS' end
  return id, nil
end
