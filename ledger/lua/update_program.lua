-- Changes columns of a program (docs/programs.md).
-- ARGV: 3 id, 4 event type, 5.. column/value pairs
local id = ARGV[3]
if redis.call('EXISTS', rkey('programs', id)) == 0 then return missing('NOT_FOUND') end
local settable = { name = true, bin_ranges = true, card_types = true, digital_first = true, time_zone = true,
  controls = true, remote_url = true, decision_timeout_ms = true, stand_in = true, remote_secret = true }
for i = 5, #ARGV, 2 do
  if not settable[ARGV[i]] then return fail('INVALID_COLUMN') end
end
for i = 5, #ARGV, 2 do setf('programs', id, ARGV[i], ARGV[i + 1]) end
emit(ARGV[4], '')
return 'OK'
