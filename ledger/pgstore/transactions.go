package pgstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
)

// Transactions reads the transaction history of cards and balances from
// the durable store: holds (authorizations, financial messages, forced posts,
// refunds) with the journal entries that changed them, and the declines
// and user balance reloads that left no hold (migration 0010:
// journal_refs and the holds indexes). docs/transactions.md describes it.
//
// Freshness: every approval is committed in Postgres before it is answered
// (the default ANTACA_ANSWER_AFTER=postgres), so it is listed at once; a
// decline's entry follows in the next group commit. Callers that must see
// those too wait for the write-behind first (api.Config.JournalBarrier).
type Transactions struct {
	db *DB
}

// NewTransactions reads from db.
func NewTransactions(db *DB) *Transactions { return &Transactions{db: db} }

// HoldRow is a hold row as Postgres holds it.
type HoldRow struct {
	ID, PartnerID, BalanceID, CardID, Currency, State, ApprovalCode, TxnType, Origin string

	Amount, Captured, Released, Requested, Approved, CreatedMs, ClosedMs int64
}

// JournalRow is one journal entry.
type JournalRow struct {
	PartnerID string
	Seq       int64
	Type      string
	Reason    string
	TsMs      int64
	Changes   []RowChange
	Meta      json.RawMessage // nil when the entry has none
}

// RowChange is one row change of a journal entry (docs/ledger.md,
// "Journal events"): all values are strings.
type RowChange struct {
	Table string            `json:"t"`
	ID    string            `json:"id"`
	V     string            `json:"v"`
	Set   map[string]string `json:"set,omitempty"`
	Add   map[string]string `json:"add,omitempty"`
}

// Change returns the entry's change of a row, or false.
func (j JournalRow) Change(table, id string) (RowChange, bool) {
	for _, c := range j.Changes {
		if c.Table == table && c.ID == id {
			return c, true
		}
	}
	return RowChange{}, false
}

// AddOf returns the delta the change adds to a numeric column (0 when none).
func (c RowChange) AddOf(col string) int64 {
	n, _ := strconv.ParseInt(c.Add[col], 10, 64)
	return n
}

// TxnRef names a transaction: a hold, or a journal entry (decline, reload).
type TxnRef struct {
	HoldID    string // a hold; empty for a journal entry
	PartnerID string // a journal entry's partner
	Seq       int64  // a journal entry's sequence number
}

// Txn is one transaction of a listing.
type Txn struct {
	Hold    *HoldRow     // set for a hold
	Entry   *JournalRow  // set for a decline or a reload
	History []JournalRow // a hold's journal entries, oldest first
}

// Ref returns the transaction's reference.
func (t Txn) Ref() TxnRef {
	if t.Hold != nil {
		return TxnRef{HoldID: t.Hold.ID}
	}
	return TxnRef{PartnerID: t.Entry.PartnerID, Seq: t.Entry.Seq}
}

// TxnQuery selects the transactions of one card or one balance, newest
// first, after the cursor.
type TxnQuery struct {
	PartnerID string
	// CardID lists one card: its holds and declines. Otherwise BalanceID
	// lists a balance: its holds, its reloads and the declines of CardIDs
	// (the balance's cards).
	CardID    string
	BalanceID string
	CardIDs   []string
	After     *TxnRef // the last transaction of the previous page
	Limit     int
}

// ErrForeignCursor says a cursor names no transaction of the listing.
var ErrForeignCursor = errors.New("the cursor is not a transaction of this listing")

// sortKey orders transactions, newest first: by time, then journal entries
// before holds of the same millisecond, then by hold id or sequence.
type sortKey struct {
	ms   int64
	hold bool
	id   string
	seq  int64
}

func (a sortKey) after(b sortKey) bool { // a comes later in the listing than b
	if a.ms != b.ms {
		return a.ms < b.ms
	}
	if a.hold != b.hold {
		return a.hold
	}
	if a.hold {
		return a.id < b.id
	}
	return a.seq < b.seq
}

func keyOf(t Txn) sortKey {
	if t.Hold != nil {
		return sortKey{ms: t.Hold.CreatedMs, hold: true, id: t.Hold.ID}
	}
	return sortKey{ms: t.Entry.TsMs, seq: t.Entry.Seq}
}

const holdColumns = `id, partner_id, balance_id, card_id, currency, state, approval_code, txn_type, origin,
	amount, captured, released, requested, approved, created_ms, closed_ms`

func scanHold(row Row) (HoldRow, error) {
	var h HoldRow
	err := row.Scan(&h.ID, &h.PartnerID, &h.BalanceID, &h.CardID, &h.Currency, &h.State, &h.ApprovalCode, &h.TxnType, &h.Origin,
		&h.Amount, &h.Captured, &h.Released, &h.Requested, &h.Approved, &h.CreatedMs, &h.ClosedMs)
	return h, err
}

// List returns up to q.Limit transactions and whether more follow.
func (s *Transactions) List(ctx context.Context, q TxnQuery) ([]Txn, bool, error) {
	if q.Limit < 1 {
		q.Limit = 20
	}
	start := sortKey{ms: math.MaxInt64, hold: false, seq: math.MaxInt64}
	if q.After != nil {
		k, err := s.cursorKey(ctx, q)
		if err != nil {
			return nil, false, err
		}
		start = k
	}
	n := q.Limit + 1

	// Each source is read newest first from its index, at most n rows,
	// and the sources are merged here.
	var out []Txn
	holdsSQL := `SELECT ` + holdColumns + ` FROM holds WHERE card_id = $1 AND partner_id = $2 AND (created_ms, id) < ($3, $4)
		ORDER BY created_ms DESC, id DESC LIMIT $5`
	owner := q.CardID
	if q.CardID == "" {
		holdsSQL = `SELECT ` + holdColumns + ` FROM holds WHERE balance_id = $1 AND partner_id = $2 AND (created_ms, id) < ($3, $4)
		ORDER BY created_ms DESC, id DESC LIMIT $5`
		owner = q.BalanceID
	}
	// Holds strictly after the start key: a journal-entry start at ms
	// lets every hold of ms through (holds sort after entries).
	hms, hid := start.ms, start.id
	if !start.hold {
		if hms < math.MaxInt64 {
			hms++
		}
		hid = ""
	}
	rows, err := s.db.Query(ctx, holdsSQL, owner, q.PartnerID, hms, hid, n)
	if err != nil {
		return nil, false, fmt.Errorf("listing holds: %w", err)
	}
	holds, err := collect(rows, scanHold)
	if err != nil {
		return nil, false, fmt.Errorf("listing holds: %w", err)
	}
	for i := range holds {
		out = append(out, Txn{Hold: &holds[i]})
	}

	// Entries strictly after the start key: a hold start at ms lets
	// through only entries older than ms.
	jms, jseq := start.ms, start.seq
	if start.hold {
		jseq = 0
	}
	type source struct {
		refs []string
		typ  string
	}
	sources := []source{{refs: []string{q.CardID}, typ: "decline"}}
	if q.CardID == "" {
		sources = []source{{refs: q.CardIDs, typ: "decline"}, {refs: []string{q.BalanceID}, typ: "user_balance_reload"}}
	}
	var seqs []int64
	for _, src := range sources {
		if len(src.refs) == 0 {
			continue
		}
		rows, err := s.db.Query(ctx, `SELECT seq FROM journal_refs
			WHERE `+s.db.In("ref_id", "$1")+` AND type = $2 AND partner_id = $3 AND (ts_ms, seq) < ($4, $5)
			ORDER BY ts_ms DESC, seq DESC LIMIT $6`, src.refs, src.typ, q.PartnerID, jms, jseq, n)
		if err != nil {
			return nil, false, fmt.Errorf("listing %s entries: %w", src.typ, err)
		}
		got, err := collect(rows, scanInt64)
		if err != nil {
			return nil, false, fmt.Errorf("listing %s entries: %w", src.typ, err)
		}
		seqs = append(seqs, got...)
	}
	entries, err := s.entries(ctx, q.PartnerID, seqs)
	if err != nil {
		return nil, false, err
	}
	for i := range entries {
		out = append(out, Txn{Entry: &entries[i]})
	}

	slices.SortFunc(out, func(a, b Txn) int {
		ka, kb := keyOf(a), keyOf(b)
		switch {
		case kb.after(ka):
			return -1
		case ka.after(kb):
			return 1
		}
		return 0
	})
	more := len(out) > q.Limit
	if more {
		out = out[:q.Limit]
	}
	var holdIDs []string
	for _, t := range out {
		if t.Hold != nil {
			holdIDs = append(holdIDs, t.Hold.ID)
		}
	}
	hist, err := s.Histories(ctx, q.PartnerID, holdIDs, math.MaxInt64)
	if err != nil {
		return nil, false, err
	}
	for i := range out {
		if out[i].Hold != nil {
			out[i].History = hist[out[i].Hold.ID]
		}
	}
	return out, more, nil
}

// cursorKey finds the sort key of q.After, which must be a transaction of
// the listing (ErrForeignCursor otherwise).
func (s *Transactions) cursorKey(ctx context.Context, q TxnQuery) (sortKey, error) {
	a := q.After
	if a.HoldID != "" {
		h, err := scanHold(s.db.QueryRow(ctx, `SELECT `+holdColumns+` FROM holds WHERE id = $1`, a.HoldID))
		if errors.Is(err, sql.ErrNoRows) {
			return sortKey{}, ErrForeignCursor
		}
		if err != nil {
			return sortKey{}, fmt.Errorf("reading the cursor: %w", err)
		}
		if h.PartnerID != q.PartnerID || (q.CardID != "" && h.CardID != q.CardID) || (q.CardID == "" && h.BalanceID != q.BalanceID) {
			return sortKey{}, ErrForeignCursor
		}
		return sortKey{ms: h.CreatedMs, hold: true, id: h.ID}, nil
	}
	if a.PartnerID != q.PartnerID {
		return sortKey{}, ErrForeignCursor
	}
	es, err := s.entries(ctx, a.PartnerID, []int64{a.Seq})
	if err != nil {
		return sortKey{}, err
	}
	if len(es) == 0 {
		return sortKey{}, ErrForeignCursor
	}
	e := es[0]
	ok := false
	switch e.Type {
	case "decline":
		card := DeclinedCard(e)
		ok = card != "" && (card == q.CardID || q.CardID == "" && slices.Contains(q.CardIDs, card))
	case "user_balance_reload":
		_, ok = e.Change("user_balances", q.BalanceID)
		ok = ok && q.CardID == ""
	}
	if !ok {
		return sortKey{}, ErrForeignCursor
	}
	return sortKey{ms: e.TsMs, seq: e.Seq}, nil
}

// DeclinedCard returns the card id a decline entry names ("" when none).
func DeclinedCard(e JournalRow) string {
	var m struct {
		Card string `json:"card"`
	}
	_ = json.Unmarshal(e.Meta, &m)
	return m.Card
}

// entries reads journal entries of a partner by sequence number (missing
// ones are left out), in no particular order.
func (s *Transactions) entries(ctx context.Context, partnerID string, seqs []int64) ([]JournalRow, error) {
	if len(seqs) == 0 {
		return nil, nil
	}
	rows, err := s.db.Query(ctx, `SELECT partner_id, seq, type, reason, ts_ms, changes, meta
		FROM journal WHERE partner_id = $1 AND `+s.db.In("seq", "$2"), partnerID, seqs)
	if err != nil {
		return nil, fmt.Errorf("reading journal entries: %w", err)
	}
	return collectEntries(rows)
}

func collectEntries(rows Rows) ([]JournalRow, error) {
	out, err := collect(rows, func(r Row) (JournalRow, error) {
		var j JournalRow
		var ch, meta []byte
		if err := r.Scan(&j.PartnerID, &j.Seq, &j.Type, &j.Reason, &j.TsMs, &ch, &meta); err != nil {
			return j, err
		}
		_ = json.Unmarshal(ch, &j.Changes) // an entry that is not a list of changes has none
		if len(meta) > 0 {
			j.Meta = meta
		}
		return j, nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading journal entries: %w", err)
	}
	return out, nil
}

// Histories returns the journal entries that changed each hold, oldest
// first, up to sequence number upTo.
func (s *Transactions) Histories(ctx context.Context, partnerID string, holdIDs []string, upTo int64) (map[string][]JournalRow, error) {
	out := make(map[string][]JournalRow, len(holdIDs))
	if len(holdIDs) == 0 {
		return out, nil
	}
	rows, err := s.db.Query(ctx, `SELECT r.ref_id, j.partner_id, j.seq, j.type, j.reason, j.ts_ms, j.changes, j.meta
		FROM journal_refs r JOIN journal j ON j.partner_id = r.partner_id AND j.seq = r.seq
		WHERE `+s.db.In("r.ref_id", "$1")+` AND r.partner_id = $2 AND r.type <> 'decline' AND r.seq <= $3
		ORDER BY r.seq`, holdIDs, partnerID, upTo)
	if err != nil {
		return nil, fmt.Errorf("reading hold histories: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var j JournalRow
		var ch, meta []byte
		if err := rows.Scan(&id, &j.PartnerID, &j.Seq, &j.Type, &j.Reason, &j.TsMs, &ch, &meta); err != nil {
			return nil, fmt.Errorf("reading hold histories: %w", err)
		}
		_ = json.Unmarshal(ch, &j.Changes)
		if len(meta) > 0 {
			j.Meta = meta
		}
		out[id] = append(out[id], j)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading hold histories: %w", err)
	}
	return out, nil
}

// Get reads one transaction as it stood after journal entry upTo of its
// partner (math.MaxInt64: as it is now). A hold is then rebuilt from its
// history rather than read from its row. ok is false when there is none.
func (s *Transactions) Get(ctx context.Context, partnerID string, ref TxnRef, upTo int64) (Txn, bool, error) {
	if ref.HoldID == "" {
		es, err := s.entries(ctx, ref.PartnerID, []int64{ref.Seq})
		if err != nil || len(es) == 0 {
			return Txn{}, false, err
		}
		return Txn{Entry: &es[0]}, true, nil
	}
	hist, err := s.Histories(ctx, partnerID, []string{ref.HoldID}, upTo)
	if err != nil {
		return Txn{}, false, err
	}
	h := hist[ref.HoldID]
	if len(h) == 0 {
		return Txn{}, false, nil
	}
	row := FoldHold(ref.HoldID, partnerID, h)
	return Txn{Hold: &row, History: h}, true, nil
}

// FoldHold rebuilds a hold row from the journal entries that changed it:
// the creating entry sets every column, later ones set and add.
func FoldHold(id, partnerID string, history []JournalRow) HoldRow {
	h := HoldRow{ID: id, PartnerID: partnerID}
	num := map[string]*int64{"amount": &h.Amount, "captured": &h.Captured, "released": &h.Released,
		"requested": &h.Requested, "approved": &h.Approved, "created_ms": &h.CreatedMs, "closed_ms": &h.ClosedMs}
	txt := map[string]*string{"balance_id": &h.BalanceID, "card_id": &h.CardID, "currency": &h.Currency, "state": &h.State,
		"approval_code": &h.ApprovalCode, "txn_type": &h.TxnType, "origin": &h.Origin}
	for _, e := range history {
		c, ok := e.Change("holds", id)
		if !ok {
			continue
		}
		for col, v := range c.Set {
			if p := num[col]; p != nil {
				*p, _ = strconv.ParseInt(v, 10, 64)
			} else if p := txt[col]; p != nil {
				*p = v
			}
		}
		for col := range c.Add {
			if p := num[col]; p != nil {
				*p += c.AddOf(col)
			}
		}
	}
	return h
}
