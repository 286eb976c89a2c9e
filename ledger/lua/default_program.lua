-- Gives a partner that predates programs its default program: its single
-- BIN as the one range, its currency and digital-first flag, created when
-- the partner was. Does nothing when the program exists or there is no BIN.
-- The same row is what migration 0020 writes into Postgres.
-- ARGV: 3 program id
local id = ARGV[3]
local p = row('partners', pid)
if p == nil then return fail('PARTNER_NOT_FOUND') end
if p.bin == nil or p.bin == '' then return 0 end
if redis.call('EXISTS', rkey('programs', id)) == 1 then return 0 end
newrow('programs', id, {
  'name', p.name or '',
  'currency', p.currency or '',
  'bin_ranges', '[{"from":"' .. p.bin .. '","to":"' .. p.bin .. '"}]',
  'card_types', '',
  'digital_first', p.digital_first or '',
  'time_zone', '',
  'controls', '',
  'remote_url', '',
  'decision_timeout_ms', '',
  'stand_in', '',
  'created_at', p.created_at or '',
  'remote_secret', '',
})
redis.call('SADD', base .. ':programs', id)
emit('program_create', '')
return 1
