package pgstore

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/antaca/antaca/ledger"
)

// table is one row table as the write-behind, recovery and audit see it. It
// is derived from ledger.Tables, ledger.Columns and ledger.NumericColumns at
// start-up, so every statement built here follows the Redis side's column
// lists and cannot drift from them.
type table struct {
	name    string
	cols    []string // ledger.Columns order
	numeric []bool   // numeric[i] reports whether cols[i] is a bigint column
	index   map[string]int

	selectSQL string // every row, every column as text (any dialect)
	updateSQL string // Postgres: aggregated changes to existing rows (see PGSink)
	insertSQL string // Postgres: rows that did not exist yet
	// insertNewSQL is insertSQL for rows that cannot exist yet: without
	// ON CONFLICT, so that one existing fails the statement.
	insertNewSQL string
	lite         tableSQL
}

// identRE is what a table or column name must look like before it is put in
// SQL. Names come from package ledger, never from events, but checking them
// once here means no identifier reaches Postgres unvalidated.
var identRE = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

var (
	tables     = map[string]*table{}
	tableOrder []*table
)

func init() {
	for _, name := range ledger.Tables {
		t, err := newTable(name)
		if err != nil {
			panic("pgstore: " + err.Error())
		}
		tables[name] = t
		tableOrder = append(tableOrder, t)
	}
	for name := range ledger.Columns {
		if tables[name] == nil {
			panic(fmt.Sprintf("pgstore: ledger.Columns has table %q missing from ledger.Tables", name))
		}
	}
}

// reserved are the columns every row has besides ledger.Columns.
var reserved = map[string]bool{"id": true, "partner_id": true, "v": true}

func newTable(name string) (*table, error) {
	if !identRE.MatchString(name) {
		return nil, fmt.Errorf("table name %q is not a plain identifier", name)
	}
	cols, ok := ledger.Columns[name]
	if !ok {
		return nil, fmt.Errorf("table %q has no ledger.Columns entry", name)
	}
	t := &table{name: name, cols: cols, numeric: make([]bool, len(cols)), index: make(map[string]int, len(cols))}
	for i, c := range cols {
		if !identRE.MatchString(c) || reserved[c] {
			return nil, fmt.Errorf("column %q of %q is not usable", c, name)
		}
		if _, dup := t.index[c]; dup {
			return nil, fmt.Errorf("column %q of %q listed twice", c, name)
		}
		t.index[c] = i
	}
	for _, c := range ledger.NumericColumns[name] {
		i, ok := t.index[c]
		if !ok {
			return nil, fmt.Errorf("numeric column %q of %q is not in ledger.Columns", c, name)
		}
		t.numeric[i] = true
	}
	t.buildSQL()
	return t, nil
}

func quote(ident string) string { return `"` + ident + `"` }

func (t *table) pgType(i int) string {
	if t.numeric[i] {
		return "bigint"
	}
	return "text"
}

// tableSQL are a table's write statements in one dialect.
type tableSQL struct {
	updateSQL string // aggregated changes to existing rows (see PGSink)
	insertSQL string // rows that did not exist yet
}

func (t *table) buildSQL() {
	sel := []string{"id", "partner_id", "CAST(v AS text)"}
	for _, c := range t.cols {
		sel = append(sel, "CAST("+quote(c)+" AS text)")
	}
	t.selectSQL = "SELECT " + strings.Join(sel, ", ") + " FROM " + quote(t.name) + " ORDER BY partner_id, id"

	pg := t.writeSQL(postgresDialect)
	t.updateSQL, t.insertSQL = pg.updateSQL, pg.insertSQL
	t.insertNewSQL = strings.TrimSuffix(pg.insertSQL, onConflictNothing)
	t.lite = t.writeSQL(sqliteDialect)
}

// writeSQL builds the table's UPDATE and INSERT of a batch in dialect d:
// the rule is the same for every store, only its spelling differs.
func (t *table) writeSQL(d *dialect) tableSQL {
	q := quote(t.name)

	// UPDATE of rows that exist. Per column the arrays carry the version of
	// the change that last set it (0: not set in this batch), that value,
	// and for numeric columns the sum of adds after that set and the sum of
	// all adds. A set wins over the column's stored version (cv[i], or the
	// row's v for rows written before per-column versions); adds always
	// apply. In order (the set is newer than the row) a numeric set drops
	// what was added before it; a set that arrives after newer events of
	// its row (late) keeps what was added since the column's last set
	// (ca[i]): the scripts only add to a numeric column after the set that
	// created it, so those adds are newer. See aggregate for why, in order,
	// this equals applying the changes one by one.
	var sets, cvs, cas, types, names []string
	param := func(typ, alias string) {
		types = append(types, typ)
		names = append(names, alias)
	}
	param("text", "id")
	param("bigint", "v")
	for i, c := range t.cols {
		ver, val := fmt.Sprintf("x.ver_%d", i), fmt.Sprintf("x.val_%d", i)
		param("bigint", ver[2:])
		param(t.pgType(i), val[2:])
		stored := fmt.Sprintf("COALESCE(%s, r.v)", d.elem("r.cv", i))
		// A version equal to the row's was applied already (the same event).
		wins := ver + " > " + stored + " AND " + ver + " <> r.v"
		cvs = append(cvs, fmt.Sprintf("CASE WHEN %s THEN %s ELSE %s END", wins, ver, stored))
		if t.numeric[i] {
			after, all := fmt.Sprintf("x.aft_%d", i), fmt.Sprintf("x.all_%d", i)
			param("bigint", after[2:])
			param("bigint", all[2:])
			since := fmt.Sprintf("CASE WHEN %s < r.v THEN COALESCE(%s, 0) ELSE 0 END", ver, d.elem("r.ca", i))
			sets = append(sets, fmt.Sprintf("%s = CASE WHEN %s THEN %s + %s + %s ELSE r.%s + %s END",
				quote(c), wins, val, after, since, quote(c), all))
			cas = append(cas, fmt.Sprintf("CASE WHEN %s THEN %s + %s ELSE COALESCE(%s, 0) + %s END",
				wins, after, since, d.elem("r.ca", i), all))
		} else {
			sets = append(sets, fmt.Sprintf("%s = CASE WHEN %s THEN %s ELSE r.%s END", quote(c), wins, val, quote(c)))
			cas = append(cas, "0")
		}
	}
	sets = append(sets, "v = "+d.greatest("r.v", "x.v"), "cv = "+d.array(cvs), "ca = "+d.array(cas))
	// The redundant r.id = ANY($1) lets Postgres's planner probe the
	// primary key for the batch's rows; joined with the unnest alone it
	// hashes the whole table, which on holds grows with every
	// authorization.
	var out tableSQL
	out.updateSQL = "UPDATE " + q + " AS r SET " + strings.Join(sets, ", ") +
		" FROM " + d.batchRows(types, names, "x") + " WHERE r.id = x.id" + d.batchFilter

	// INSERT of rows that did not exist: their values are computed in Go;
	// cv and ca arrive as array literals.
	cols := []string{"id", "partner_id", "v", "cv", "ca"}
	types = []string{"text", "text", "bigint", "text", "text"}
	sel := []string{"u.c1", "u.c2", "u.c3", d.castArray("u.c4"), d.castArray("u.c5")}
	alias := []string{"c1", "c2", "c3", "c4", "c5"}
	for i, c := range t.cols {
		cols = append(cols, quote(c))
		types = append(types, t.pgType(i))
		sel = append(sel, fmt.Sprintf("u.c%d", i+6))
		alias = append(alias, fmt.Sprintf("c%d", i+6))
	}
	out.insertSQL = "INSERT INTO " + q + " (" + strings.Join(cols, ", ") + ") SELECT " + strings.Join(sel, ", ") +
		" FROM " + d.batchRows(types, alias, "u") + d.insertSelect + onConflictNothing
	return out
}

const onConflictNothing = " ON CONFLICT (id) DO NOTHING"

// sensitive columns are never printed: the audit says they differ, not how.
var sensitive = map[string]bool{"pan_enc": true, "cvv_enc": true, "pin_verifier": true, "pan_hash": true}

func lookupTable(name string) (*table, error) {
	t, ok := tables[name]
	if !ok {
		return nil, fmt.Errorf("unknown table %q", name)
	}
	return t, nil
}
