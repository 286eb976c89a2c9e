package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/antaca/antaca/authz"
)

// DefaultProgramID is the id of the program a partner's single BIN became
// when programs came (and of the program CreatePartner makes from a BIN).
// Cards with no program_id belong to it.
func DefaultProgramID(partnerID string) string { return authz.DefaultProgramID(partnerID) }

// ProgramOfCard is the program a card belongs to.
func ProgramOfCard(partnerID, programID string) string {
	return authz.ProgramOfCard(partnerID, programID)
}

// claimRanges sets the BIN ranges of one program in the routing hash,
// atomically: it refuses (returning the range in the way) when one overlaps
// a range of another program, and drops the program's ranges no longer
// listed. One key, so it runs on Redis Cluster too.
var claimRanges = redis.NewScript(`
local owner = ARGV[1]
local function span(f)
  local a, b = string.match(f, '^(%d+)-(%d+)$')
  if not a then return nil end
  return a .. string.rep('0', 8 - #a), b .. string.rep('9', 8 - #b)
end
local all = redis.call('HGETALL', KEYS[1])
local want = {}
for i = 2, #ARGV do want[ARGV[i]] = true end
for i = 1, #all, 2 do
  if all[i + 1] ~= owner then
    local lo, hi = span(all[i])
    for j = 2, #ARGV do
      local l2, h2 = span(ARGV[j])
      if lo and l2 and lo <= h2 and l2 <= hi then return all[i] end
    end
  end
end
for i = 1, #all, 2 do
  if all[i + 1] == owner and not want[all[i]] then redis.call('HDEL', KEYS[1], all[i]) end
end
for i = 2, #ARGV do redis.call('HSET', KEYS[1], ARGV[i], owner) end
return ''
`)

func rangeField(r authz.BINRange) string { return r.From + "-" + r.To }

func (l *Ledger) claim(ctx context.Context, partnerID, programID string, ranges []authz.BINRange) error {
	args := []any{partnerID + "/" + programID}
	for _, r := range ranges {
		args = append(args, rangeField(r))
	}
	in, err := claimRanges.Run(ctx, l.rdb, []string{l.keys.Ranges()}, args...).Text()
	if err != nil {
		return fmt.Errorf("claiming BIN ranges: %w", err)
	}
	if in != "" {
		return fmt.Errorf("BIN ranges overlap %s: %w", in, ErrRangeInUse)
	}
	return nil
}

// programArgs are the columns of a program as the scripts take them.
func programCols(p authz.Program) (ranges, types, df, controls, timeout, standIn string) {
	b, _ := json.Marshal(p.Ranges)
	ranges = string(b)
	ts := make([]string, len(p.CardTypes))
	for i, t := range p.CardTypes {
		ts[i] = string(t)
	}
	types = strings.Join(ts, ",")
	if p.DigitalFirst {
		df = "true"
	}
	if !p.Controls.IsZero() {
		b, _ = json.Marshal(p.Controls)
		controls = string(b)
	}
	if p.DecisionTimeoutMS > 0 {
		timeout = strconv.FormatInt(p.DecisionTimeoutMS, 10)
	}
	if p.StandIn.Policy != "" {
		b, _ = json.Marshal(p.StandIn)
		standIn = string(b)
	}
	return
}

// CreateProgram creates a program of a partner: its ranges are claimed
// first (ErrRangeInUse when one overlaps another program's), then the row
// is written (ErrAlreadyExists when the id is taken).
func (l *Ledger) CreateProgram(ctx context.Context, p authz.Program) error {
	if owner, err := l.PartnerOf(ctx, p.ID); err == nil && owner != "" {
		return fmt.Errorf("creating program: %w", ErrAlreadyExists)
	}
	if err := l.claim(ctx, p.PartnerID, p.ID, p.Ranges); err != nil {
		return err
	}
	ranges, types, df, controls, timeout, standIn := programCols(p)
	err := l.run(ctx, "create_program", p.PartnerID, p.ID, p.Name, p.Currency, ranges, types, df, p.TimeZone,
		controls, p.RemoteURL, timeout, standIn, p.CreatedAt, p.RemoteSecret).Err()
	if err != nil {
		if !errors.Is(mapScriptError("", err), ErrAlreadyExists) {
			_ = l.claim(ctx, p.PartnerID, p.ID, nil)
		}
		return mapScriptError("creating program", err)
	}
	return l.index(ctx, p.PartnerID, p.ID)
}

// UpdateProgram writes every column of p (ranges claimed first).
func (l *Ledger) UpdateProgram(ctx context.Context, p authz.Program) error {
	if err := l.claim(ctx, p.PartnerID, p.ID, p.Ranges); err != nil {
		return err
	}
	ranges, types, df, controls, timeout, standIn := programCols(p)
	err := l.run(ctx, "update_program", p.PartnerID, p.ID, "program_update", "name", p.Name, "bin_ranges", ranges,
		"card_types", types, "digital_first", df, "time_zone", p.TimeZone, "controls", controls,
		"remote_url", p.RemoteURL, "decision_timeout_ms", timeout, "stand_in", standIn, "remote_secret", p.RemoteSecret).Err()
	return mapScriptError("updating program", err)
}

// SetProgramControls sets a program's default spend controls.
func (l *Ledger) SetProgramControls(ctx context.Context, partnerID, programID string, c authz.Controls) error {
	raw := ""
	if !c.IsZero() {
		b, _ := json.Marshal(c)
		raw = string(b)
	}
	err := l.run(ctx, "update_program", partnerID, programID, "program_controls", "controls", raw).Err()
	return mapScriptError("setting program controls", err)
}

// SetCardControls sets a card's own spend controls (nil: the program's
// apply again). With seen != nil the controls in force must still be what
// the caller saw (ErrCardChanged otherwise).
func (l *Ledger) SetCardControls(ctx context.Context, partnerID, cardID string, c *authz.Controls, seen *string) error {
	raw := ""
	if c != nil {
		b, _ := json.Marshal(c)
		raw = string(b)
	}
	want := "-"
	if seen != nil {
		want = *seen
	}
	err := l.run(ctx, "set_card_controls", partnerID, cardID, raw, want).Err()
	return mapScriptError("setting card controls", err)
}

// Program reads a program; ErrProgramNotFound when absent.
func (l *Ledger) Program(ctx context.Context, partnerID, programID string) (authz.Program, error) {
	m, err := l.rdb.HGetAll(ctx, l.keys.Row(partnerID, "programs", programID)).Result()
	if err != nil {
		return authz.Program{}, fmt.Errorf("reading program: %w", err)
	}
	if len(m) == 0 {
		return authz.Program{}, fmt.Errorf("reading program %q: %w", programID, ErrProgramNotFound)
	}
	return ProgramFromRow(partnerID, m)
}

// ProgramFromRow decodes a program row.
func ProgramFromRow(partnerID string, m map[string]string) (authz.Program, error) {
	f := fields{what: "program " + m["id"]}
	p := authz.Program{ID: m["id"], PartnerID: partnerID, Name: m["name"], Currency: m["currency"],
		DigitalFirst: m["digital_first"] == "true", TimeZone: m["time_zone"], RemoteURL: m["remote_url"],
		CreatedAt: m["created_at"], Version: f.int("v", m["v"]), DecisionTimeoutMS: f.int("decision_timeout_ms", m["decision_timeout_ms"]),
		RemoteSecret: m["remote_secret"]}
	if f.err != nil {
		return p, f.err
	}
	if s := m["bin_ranges"]; s != "" {
		if err := json.Unmarshal([]byte(s), &p.Ranges); err != nil {
			return p, fmt.Errorf("program %s: bin_ranges: %w", p.ID, err)
		}
	}
	for _, t := range strings.Split(m["card_types"], ",") {
		if t != "" {
			p.CardTypes = append(p.CardTypes, authz.CardType(t))
		}
	}
	if s := m["controls"]; s != "" {
		if err := json.Unmarshal([]byte(s), &p.Controls); err != nil {
			return p, fmt.Errorf("program %s: controls: %w", p.ID, err)
		}
	}
	p.StandIn.Policy = authz.StandInDecline
	if s := m["stand_in"]; s != "" {
		if err := json.Unmarshal([]byte(s), &p.StandIn); err != nil {
			return p, fmt.Errorf("program %s: stand_in: %w", p.ID, err)
		}
	}
	return p, nil
}

// Programs lists a partner's programs, by id.
func (l *Ledger) Programs(ctx context.Context, partnerID string) ([]authz.Program, error) {
	ids, err := l.rdb.SMembers(ctx, l.keys.Programs(partnerID)).Result()
	if err != nil {
		return nil, fmt.Errorf("listing programs: %w", err)
	}
	slices.Sort(ids)
	out := make([]authz.Program, 0, len(ids))
	for _, id := range ids {
		p, err := l.Program(ctx, partnerID, id)
		if errors.Is(err, ErrProgramNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// Routes reads every program's ranges (the in-process routing table).
func (l *Ledger) Routes(ctx context.Context) ([]authz.Route, error) {
	m, err := l.rdb.HGetAll(ctx, l.keys.Ranges()).Result()
	if err != nil {
		return nil, fmt.Errorf("reading BIN ranges: %w", err)
	}
	out := make([]authz.Route, 0, len(m))
	for f, owner := range m {
		from, to, ok1 := strings.Cut(f, "-")
		pid, prg, ok2 := strings.Cut(owner, "/")
		if !ok1 || !ok2 {
			continue
		}
		out = append(out, authz.Route{PartnerID: pid, ProgramID: prg, Range: authz.BINRange{From: from, To: to}})
	}
	return out, nil
}

// EnsureDefaultPrograms gives every partner with a BIN and no default
// program one (DefaultProgramID): its BIN as the one range. It is what
// partners written before programs existed need, in Redis as migration
// 0012 did in Postgres; it is idempotent and runs at every start.
func (l *Ledger) EnsureDefaultPrograms(ctx context.Context) (int, error) {
	ids, err := l.rdb.SMembers(ctx, l.keys.Partners()).Result()
	if err != nil {
		return 0, fmt.Errorf("listing partners: %w", err)
	}
	made := 0
	for _, id := range ids {
		n, err := l.ensureDefaultProgram(ctx, id)
		if err != nil {
			return made, err
		}
		made += n
	}
	return made, nil
}

func (l *Ledger) ensureDefaultProgram(ctx context.Context, partnerID string) (int, error) {
	prg := DefaultProgramID(partnerID)
	n, err := l.run(ctx, "default_program", partnerID, prg).Int()
	if err != nil {
		return 0, mapScriptError("creating default program", err)
	}
	if n == 0 {
		return 0, nil // there already, or no BIN: nothing to write
	}
	bin, err := l.rdb.HGet(ctx, l.keys.Row(partnerID, "partners", partnerID), "bin").Result()
	if err != nil {
		return 0, fmt.Errorf("reading partner BIN: %w", err)
	}
	// The BIN was claimed for the partner when it was made; the range
	// only records it for the routing table.
	if err := l.rdb.HSetNX(ctx, l.keys.Ranges(), bin+"-"+bin, partnerID+"/"+prg).Err(); err != nil {
		return 0, fmt.Errorf("routing default program: %w", err)
	}
	if err := l.index(ctx, partnerID, prg); err != nil {
		return 0, err
	}
	return n, nil
}

// Usage reads a card's spend in the current window of each limit.
func (l *Ledger) Usage(ctx context.Context, partnerID, cardID string, c authz.Controls, p authz.Program) ([]authz.WindowUsage, error) {
	now := l.now()
	loc := p.Location()
	out := make([]authz.WindowUsage, 0, len(c.Limits))
	pipe := l.rdb.Pipeline()
	cmds := make([]*redis.SliceCmd, len(c.Limits))
	wins := make([]authz.Window, len(c.Limits))
	for i, lim := range c.Limits {
		wins[i] = authz.WindowOf(lim.Interval, now, loc)
		cmds[i] = pipe.HMGet(ctx, l.keys.Spend(partnerID, cardID, wins[i].ID), "amount", "count")
	}
	if len(c.Limits) > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, fmt.Errorf("reading spend windows: %w", err)
		}
	}
	f := fields{what: "spend window"}
	for i, lim := range c.Limits {
		vals := cmds[i].Val()
		num := func(v any) int64 {
			s, _ := v.(string)
			return f.int("spend", s)
		}
		u := authz.WindowUsage{Interval: lim.Interval, Window: wins[i].ID, Spent: num(vals[0]), Count: num(vals[1]),
			Amount: lim.Amount, CountLimit: lim.Count}
		if !wins[i].End.IsZero() {
			end := wins[i].End.UTC()
			u.ResetsAt = &end
		}
		if lim.Amount > 0 {
			r := max(0, lim.Amount-u.Spent)
			u.RemainingAmount = &r
		}
		if lim.Count > 0 {
			r := max(0, lim.Count-u.Count)
			u.RemainingCount = &r
		}
		out = append(out, u)
	}
	return out, f.err
}

// Now is the ledger's clock.
func (l *Ledger) Now() time.Time { return l.now() }

// ProgramControlsJSON is a program's controls as stored (JSON, "" for
// none): the form a customer's change to a card's controls is compared
// with.
func (l *Ledger) ProgramControlsJSON(ctx context.Context, partnerID, programID string) (string, error) {
	m, err := l.row(ctx, partnerID, "programs", programID)
	if err != nil {
		return "", err
	}
	return m["controls"], nil
}
