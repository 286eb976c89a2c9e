-- Creates a card program of the partner (docs/programs.md). Its BIN ranges
-- were claimed before (Ledger.CreateProgram), so no other program routes them.
-- ARGV: 3 id, 4 name, 5 currency, 6 bin_ranges (JSON), 7 card_types (comma
--       separated, '' all), 8 digital_first ('true' or ''), 9 time_zone,
--       10 controls (JSON or ''), 11 remote_url, 12 decision_timeout_ms,
--       13 stand_in (JSON), 14 created_at ('' now), 15 remote_secret
local id = ARGV[3]
if redis.call('EXISTS', rkey('partners', pid)) == 0 then return fail('PARTNER_NOT_FOUND') end
if redis.call('EXISTS', rkey('programs', id)) == 1 then return fail('ALREADY_EXISTS') end
local created = ARGV[14]
if created == nil or created == '' then created = fmt(now) end
newrow('programs', id, {
  'name', ARGV[4],
  'currency', ARGV[5],
  'bin_ranges', ARGV[6],
  'card_types', ARGV[7],
  'digital_first', ARGV[8],
  'time_zone', ARGV[9],
  'controls', ARGV[10],
  'remote_url', ARGV[11],
  'decision_timeout_ms', ARGV[12],
  'stand_in', ARGV[13],
  'created_at', created,
  'remote_secret', ARGV[15] or '',
})
redis.call('SADD', base .. ':programs', id)
emit('program_create', '')
return 'OK'
