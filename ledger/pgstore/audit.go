package pgstore

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/antaca/antaca/ledger"
	"github.com/redis/go-redis/v9"
)

// DiffKind classifies an audit finding.
type DiffKind string

// The kinds of audit findings.
const (
	DiffOnlyInRedis    DiffKind = "only_in_redis"    // a row Postgres lacks
	DiffOnlyInPostgres DiffKind = "only_in_postgres" // a row Redis lacks
	DiffValue          DiffKind = "value"            // a column differs
	DiffUnknownField   DiffKind = "unknown_field"    // a Redis hash field that is no column
	DiffMoney          DiffKind = "money_identity"   // funding.total_in != balances, one side
	DiffHeld           DiffKind = "held"             // user balance held != its open holds
	DiffReserved       DiffKind = "reserved"         // deposit reserved != its open holds
	DiffDangling       DiffKind = "dangling_hold"    // an open hold charging a balance that does not exist
	DiffJournalGap     DiffKind = "journal_gap"      // sequence numbers Postgres neither holds nor quarantined
	DiffQuarantined    DiffKind = "quarantined"      // journal entries waiting in journal_quarantine
)

// Difference is one audit finding. Side is "redis" or "postgres" for the
// checks made on one side; Redis and Postgres carry the two values of a
// DiffValue, left empty for card secrets, which are never printed.
type Difference struct {
	Kind     DiffKind
	Side     string
	Table    string
	ID       string
	Column   string
	Redis    string
	Postgres string
	Detail   string
}

func (d Difference) String() string {
	switch d.Kind {
	case DiffOnlyInRedis:
		return fmt.Sprintf("%s/%s: row only in redis", d.Table, d.ID)
	case DiffOnlyInPostgres:
		return fmt.Sprintf("%s/%s: row only in postgres", d.Table, d.ID)
	case DiffValue:
		if sensitive[d.Column] {
			return fmt.Sprintf("%s/%s %s: differs (value withheld)", d.Table, d.ID, d.Column)
		}
		return fmt.Sprintf("%s/%s %s: redis=%q postgres=%q", d.Table, d.ID, d.Column, d.Redis, d.Postgres)
	case DiffUnknownField:
		return fmt.Sprintf("%s/%s: redis field %q is not a column", d.Table, d.ID, d.Column)
	default:
		where := ""
		if d.Table != "" {
			where = fmt.Sprintf(" %s/%s", d.Table, d.ID)
		}
		return fmt.Sprintf("%s (%s)%s: %s", d.Kind, d.Side, where, d.Detail)
	}
}

// AuditReport is the result of Audit.
type AuditReport struct {
	// LagEntries and LagAge are the write-behind's backlog when the audit
	// ran. Rows in flight show up as differences, so a report with lag is
	// not conclusive: flush first.
	LagEntries   int64
	LagAge       time.Duration
	RowsRedis    map[string]int // per table
	RowsPostgres map[string]int
	// RetiredHolds are closed holds Postgres keeps and Redis no longer
	// does: their retention (the idempotency window after closing) passed.
	RetiredHolds int
	Differences  []Difference
}

// OK reports whether Redis and Postgres agree, both satisfy the money
// identity, and nothing was in flight.
func (r AuditReport) OK() bool { return r.LagEntries == 0 && len(r.Differences) == 0 }

func (r AuditReport) String() string {
	var b strings.Builder
	if r.OK() {
		b.WriteString("audit OK:")
	} else {
		fmt.Fprintf(&b, "audit found %d difference(s):", len(r.Differences))
	}
	for _, t := range ledger.Tables {
		fmt.Fprintf(&b, " %s=%d/%d", t, r.RowsRedis[t], r.RowsPostgres[t])
	}
	b.WriteString(" (redis/postgres rows)")
	if r.RetiredHolds > 0 {
		fmt.Fprintf(&b, ", %d closed holds retired from redis", r.RetiredHolds)
	}
	if r.LagEntries > 0 {
		fmt.Fprintf(&b, "\n  write-behind lag: %d entries, oldest %s — flush before auditing; differences below may be in flight",
			r.LagEntries, r.LagAge.Round(time.Millisecond))
	}
	for _, d := range r.Differences {
		b.WriteString("\n  " + d.String())
	}
	return b.String()
}

// auditRow is a row from either side, values canonical (integers without
// leading zeros, missing Redis fields as the column default).
type auditRow struct {
	partner string
	v       string
	vals    []string
	// Redis only: the partner_id field and fields that are no column.
	fieldPartner string
	fieldID      string
	unknown      []string
}

type sideRows map[string]map[string]*auditRow // table -> id -> row

// Audit compares Redis with Postgres row by row — every table, every
// column, rows present on one side only — and checks on each side the money
// identity of docs/ledger.md per partner and currency, that each user
// balance's held equals the sum of its open holds' amount - captured -
// released, and that each deposit balance's reserved equals the same over
// the holds charging it. Card secrets are reported as differing, never
// printed. Run it at a quiescent point after flushing the write-behind; the
// report states any lag it found. Closed holds past their retention that
// only Postgres holds are counted as retired; WithIdempotencyTTL (the same
// option Rebuild takes) sets that retention when the ledger's differs.
func Audit(ctx context.Context, rdb redis.UniversalClient, keys ledger.Keys, db *DB, opts ...RebuildOption) (AuditReport, error) {
	cfg := newRebuildConfig(opts)
	if keys.Prefix == "" {
		keys.Prefix = ledger.DefaultPrefix
	}
	rep := AuditReport{RowsRedis: map[string]int{}, RowsPostgres: map[string]int{}}
	partners, err := partnerIDs(ctx, rdb, keys)
	if err != nil {
		return rep, err
	}
	if rep.LagEntries, rep.LagAge, err = backlogOf(ctx, rdb, keys, partners); err != nil {
		return rep, fmt.Errorf("measuring write-behind lag: %w", err)
	}

	pg := sideRows{}
	for _, t := range tableOrder {
		m := map[string]*auditRow{}
		err := eachRow(ctx, db, t, func(r storedRow) error {
			m[r.id] = &auditRow{partner: r.partner, v: r.v, vals: r.vals}
			return nil
		})
		if err != nil {
			return rep, fmt.Errorf("auditing: %w", err)
		}
		pg[t.name] = m
		rep.RowsPostgres[t.name] = len(m)
	}
	rd, dups, err := loadRedisRows(ctx, rdb, keys)
	if err != nil {
		return rep, fmt.Errorf("auditing: %w", err)
	}
	rep.Differences = append(rep.Differences, dups...)
	for _, t := range tableOrder {
		rep.RowsRedis[t.name] = len(rd[t.name])
	}

	for _, t := range tableOrder {
		pgRows := pg[t.name]
		if t.name == "holds" {
			pgRows = map[string]*auditRow{}
			for id, r := range pg[t.name] {
				if _, inRedis := rd[t.name][id]; !inRedis && retired(t, r.vals, cfg) {
					rep.RetiredHolds++
					continue
				}
				pgRows[id] = r
			}
		}
		rep.Differences = append(rep.Differences, compareTable(t, rd[t.name], pgRows)...)
	}
	rep.Differences = append(rep.Differences, checkMoney("redis", rd)...)
	rep.Differences = append(rep.Differences, checkMoney("postgres", pg)...)
	journal, err := checkJournal(ctx, rdb, keys, db, partners)
	if err != nil {
		return rep, fmt.Errorf("auditing the journal: %w", err)
	}
	rep.Differences = append(rep.Differences, journal...)
	return rep, nil
}

// checkJournal checks the journal's sequence numbers, per partner: Postgres
// must hold (or have quarantined) every number from 1 to the highest, and
// Redis's sequence must not be ahead of it. A gap means entries were lost
// on their way to Postgres; quarantined entries are listed too, because
// their changes are not in Postgres.
func checkJournal(ctx context.Context, rdb redis.UniversalClient, keys ledger.Keys, db *DB, partners []string) ([]Difference, error) {
	rows, err := db.Query(ctx, `
WITH seqs AS (
    SELECT partner_id, seq FROM journal
    UNION SELECT partner_id, seq FROM journal_quarantine
)
SELECT s.partner_id, max(s.seq), count(*),
       (SELECT count(*) FROM journal_quarantine q WHERE q.partner_id = s.partner_id)
FROM seqs s GROUP BY s.partner_id`)
	if err != nil {
		return nil, err
	}
	type seqState struct{ max, count, quarantined int64 }
	pg := map[string]seqState{}
	for rows.Next() {
		var (
			p  string
			st seqState
		)
		if err := rows.Scan(&p, &st.max, &st.count, &st.quarantined); err != nil {
			rows.Close()
			return nil, err
		}
		pg[p] = st
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	var out []Difference
	for _, p := range slices.Sorted(maps.Keys(pg)) {
		st := pg[p]
		if st.quarantined > 0 {
			out = append(out, Difference{Kind: DiffQuarantined, Side: "postgres", Table: "journal", ID: p,
				Detail: fmt.Sprintf("%d entries in journal_quarantine: their changes are not in postgres", st.quarantined)})
		}
		if st.count == st.max {
			continue
		}
		mr, err := db.Query(ctx, db.d.missingSeqs, p, st.max)
		if err != nil {
			return nil, err
		}
		missing, err := collect(mr, scanInt64)
		if err != nil {
			return nil, err
		}
		out = append(out, Difference{Kind: DiffJournalGap, Side: "postgres", Table: "journal", ID: p,
			Detail: fmt.Sprintf("%d sequence numbers below %d never reached postgres (first: %v): entries lost", st.max-st.count, st.max, missing)})
	}
	if len(partners) == 0 {
		return out, nil
	}
	pipe := rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(partners))
	lens := make([]*redis.IntCmd, len(partners))
	for i, p := range partners {
		cmds[i] = pipe.Get(ctx, keys.Seq(p))
		lens[i] = pipe.XLen(ctx, keys.Journal(p))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	for i, p := range partners {
		n, err := cmds[i].Int64()
		if err != nil {
			continue // no sequence yet
		}
		// Entries still in the stream are on their way (the lag).
		if inFlight := lens[i].Val(); n > pg[p].max+inFlight {
			out = append(out, Difference{Kind: DiffJournalGap, Side: "redis", Table: "journal", ID: p,
				Detail: fmt.Sprintf("redis issued sequence numbers up to %d, postgres holds up to %d and %d are on their way: entries not in postgres",
					n, pg[p].max, inFlight)})
		}
	}
	return out, nil
}

// loadRedisRows reads every row hash of the deployment. It scans rather
// than following the partner set or the index, so rows nothing points to
// are found too.
func loadRedisRows(ctx context.Context, rdb redis.UniversalClient, keys ledger.Keys) (sideRows, []Difference, error) {
	base := keys.Prefix + ":{p:"
	found, err := ledger.ScanKeys(ctx, rdb, globEscape(base)+"*", "hash")
	if err != nil {
		return nil, nil, err
	}
	type ref struct {
		key, partner, id string
		t                *table
	}
	var refs []ref
	for _, k := range found {
		rest, ok := strings.CutPrefix(k, base)
		if !ok {
			continue
		}
		partner, rest, ok := strings.Cut(rest, "}:")
		if !ok {
			continue
		}
		tname, id, ok := strings.Cut(rest, ":")
		if !ok {
			continue
		}
		t, ok := tables[tname]
		if !ok {
			continue // idempotency records and other hashes
		}
		refs = append(refs, ref{key: k, partner: partner, id: id, t: t})
	}
	sort.Slice(refs, func(i, j int) bool { return refs[i].key < refs[j].key })

	out := sideRows{}
	for _, t := range tableOrder {
		out[t.name] = map[string]*auditRow{}
	}
	var diffs []Difference
	for start := 0; start < len(refs); start += 1000 {
		chunk := refs[start:min(start+1000, len(refs))]
		pipe := rdb.Pipeline()
		cmds := make([]*redis.MapStringStringCmd, len(chunk))
		for i, r := range chunk {
			cmds[i] = pipe.HGetAll(ctx, r.key)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, nil, fmt.Errorf("reading redis rows: %w", err)
		}
		for i, r := range chunk {
			h := cmds[i].Val()
			if len(h) == 0 {
				continue // deleted since the scan
			}
			row := &auditRow{partner: r.partner, v: canonInt(h["v"]), vals: make([]string, len(r.t.cols)),
				fieldPartner: h["partner_id"], fieldID: h["id"]}
			for j, c := range r.t.cols {
				val, ok := h[c]
				switch {
				case r.t.numeric[j]:
					row.vals[j] = canonInt(val)
				case ok:
					row.vals[j] = val
				}
			}
			for f := range h {
				if _, isCol := r.t.index[f]; !isCol && !reserved[f] {
					row.unknown = append(row.unknown, f)
				}
			}
			sort.Strings(row.unknown)
			if prev, dup := out[r.t.name][r.id]; dup {
				diffs = append(diffs, Difference{Kind: DiffValue, Table: r.t.name, ID: r.id, Column: "partner_id",
					Redis: prev.partner + "," + r.partner, Detail: "row stored under two partners"})
				continue
			}
			out[r.t.name][r.id] = row
		}
	}
	return out, diffs, nil
}

// canonInt writes an integer the way Postgres prints it; a missing value is
// the column default 0, and what is no integer is kept as is (and will
// differ).
func canonInt(s string) string {
	if s == "" {
		return "0"
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return s
	}
	return strconv.FormatInt(n, 10)
}

func compareTable(t *table, rd, pg map[string]*auditRow) []Difference {
	ids := make([]string, 0, len(rd)+len(pg))
	for id := range rd {
		ids = append(ids, id)
	}
	for id := range pg {
		if _, ok := rd[id]; !ok {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	var out []Difference
	for _, id := range ids {
		r, p := rd[id], pg[id]
		switch {
		case p == nil:
			out = append(out, Difference{Kind: DiffOnlyInRedis, Table: t.name, ID: id})
			continue
		case r == nil:
			out = append(out, Difference{Kind: DiffOnlyInPostgres, Table: t.name, ID: id})
			continue
		}
		value := func(col, rv, pv string) {
			if rv == pv {
				return
			}
			if sensitive[col] {
				rv, pv = "", "" // not even in the struct: reports get logged whole
			}
			out = append(out, Difference{Kind: DiffValue, Table: t.name, ID: id, Column: col, Redis: rv, Postgres: pv})
		}
		value("partner_id", r.partner, p.partner)
		if r.fieldPartner != "" && r.fieldPartner != r.partner {
			out = append(out, Difference{Kind: DiffValue, Table: t.name, ID: id, Column: "partner_id",
				Redis: r.fieldPartner, Postgres: p.partner, Detail: "hash field disagrees with the key"})
		}
		if r.fieldID != "" && r.fieldID != id {
			value("id", r.fieldID, id)
		}
		value("v", r.v, p.v)
		for i, c := range t.cols {
			value(c, r.vals[i], p.vals[i])
		}
		for _, f := range r.unknown {
			out = append(out, Difference{Kind: DiffUnknownField, Table: t.name, ID: id, Column: f})
		}
	}
	return out
}

// checkMoney checks the money identity and the holds of one side.
func checkMoney(side string, rows sideRows) []Difference {
	num := func(t *table, r *auditRow, col string) int64 {
		n, _ := strconv.ParseInt(r.vals[t.index[col]], 10, 64)
		return n
	}
	str := func(t *table, r *auditRow, col string) string { return r.vals[t.index[col]] }
	sortedIDs := func(m map[string]*auditRow) []string {
		ids := make([]string, 0, len(m))
		for id := range m {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		return ids
	}
	var out []Difference

	type pc struct{ partner, currency string }
	type sums struct{ fundingIn, partnerBal, userBal int64 }
	total := map[pc]*sums{}
	at := func(k pc) *sums {
		if total[k] == nil {
			total[k] = &sums{}
		}
		return total[k]
	}
	fT, pbT, ubT, hT := tables["funding"], tables["partner_balances"], tables["user_balances"], tables["holds"]
	for _, r := range rows["funding"] {
		at(pc{r.partner, str(fT, r, "currency")}).fundingIn += num(fT, r, "total_in")
	}
	for _, r := range rows["partner_balances"] {
		at(pc{r.partner, str(pbT, r, "currency")}).partnerBal +=
			num(pbT, r, "available") + num(pbT, r, "reserved") + num(pbT, r, "settled")
	}
	for _, r := range rows["user_balances"] {
		at(pc{r.partner, str(ubT, r, "currency")}).userBal +=
			num(ubT, r, "available") + num(ubT, r, "held") + num(ubT, r, "posted")
	}
	keys := make([]pc, 0, len(total))
	for k := range total {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].partner != keys[j].partner {
			return keys[i].partner < keys[j].partner
		}
		return keys[i].currency < keys[j].currency
	})
	for _, k := range keys {
		s := total[k]
		if s.fundingIn != s.partnerBal+s.userBal {
			out = append(out, Difference{Kind: DiffMoney, Side: side, Detail: fmt.Sprintf(
				"partner %s %s: funding.total_in %d != partner balances %d + user balances %d (off by %d)",
				k.partner, k.currency, s.fundingIn, s.partnerBal, s.userBal, s.fundingIn-s.partnerBal-s.userBal)})
		}
	}

	openByBalance := map[string]int64{}
	openByPartnerBalance := map[string]int64{}
	for _, id := range sortedIDs(rows["holds"]) {
		h := rows["holds"][id]
		if str(hT, h, "state") != "OPEN" {
			continue
		}
		open := num(hT, h, "amount") - num(hT, h, "captured") - num(hT, h, "released")
		bal := str(hT, h, "balance_id")
		openByBalance[bal] += open
		if rows["user_balances"][bal] == nil {
			out = append(out, Difference{Kind: DiffDangling, Side: side, Table: "holds", ID: id,
				Detail: fmt.Sprintf("open hold charges user balance %q, which does not exist", bal)})
		}
		if pb := str(hT, h, "partner_balance_id"); pb != "" {
			openByPartnerBalance[pb] += open
			if rows["partner_balances"][pb] == nil {
				out = append(out, Difference{Kind: DiffDangling, Side: side, Table: "holds", ID: id,
					Detail: fmt.Sprintf("open hold charges partner balance %q, which does not exist", pb)})
			}
		}
	}
	for _, id := range sortedIDs(rows["user_balances"]) {
		r := rows["user_balances"][id]
		if held, want := num(ubT, r, "held"), openByBalance[id]; held != want {
			out = append(out, Difference{Kind: DiffHeld, Side: side, Table: "user_balances", ID: id,
				Detail: fmt.Sprintf("held %d != open holds %d", held, want)})
		}
	}
	for _, id := range sortedIDs(rows["partner_balances"]) {
		r := rows["partner_balances"][id]
		if str(pbT, r, "type") != "DEPOSIT" {
			continue
		}
		if res, want := num(pbT, r, "reserved"), openByPartnerBalance[id]; res != want {
			out = append(out, Difference{Kind: DiffReserved, Side: side, Table: "partner_balances", ID: id,
				Detail: fmt.Sprintf("reserved %d != open holds %d", res, want)})
		}
	}
	return out
}
