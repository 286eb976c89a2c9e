package pgstore

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/antaca/antaca/ledger"
	"github.com/antaca/antaca/ledger/ledgertest"
	"github.com/jackc/pgx/v5"
)

func TestMigrateURL(t *testing.T) {
	tests := []struct {
		name, in, want, wantErr string
	}{
		{name: "postgres scheme", in: "postgres://u@h:5432/db?sslmode=disable", want: "pgx5://u@h:5432/db?connect_timeout=10&sslmode=disable"},
		{name: "postgresql scheme", in: "postgresql://u@h/db", want: "pgx5://u@h/db?connect_timeout=10"},
		{name: "keeps connect_timeout", in: "pgx5://u@h/db?connect_timeout=3", want: "pgx5://u@h/db?connect_timeout=3"},
		{name: "other scheme", in: "mysql://u@h/db", wantErr: `scheme "mysql"`},
		{name: "not a url", in: "host=h dbname=db", wantErr: "must look like"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := migrateURL(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("migrateURL(%q) error = %v, want it to mention %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("migrateURL(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

// TestMigrate runs the migrations on a fresh database, twice, and checks
// the schema is exactly what ledger.Columns describes.
func TestMigrate(t *testing.T) {
	dbURL := ledgertest.MustDatabase(t)
	ctx := ctxT(t, 30*time.Second)
	if err := Migrate(ctx, dbURL); err != nil {
		t.Fatalf("first Migrate: %v", err)
	}
	if err := Migrate(ctx, dbURL); err != nil {
		t.Fatalf("second Migrate (want no-op): %v", err)
	}
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })

	var version int
	var dirty bool
	if err := conn.QueryRow(ctx, "SELECT version, dirty FROM schema_migrations").Scan(&version, &dirty); err != nil {
		t.Fatalf("reading schema_migrations: %v", err)
	}
	// The highest number, not the count: numbers may leave gaps that
	// other branches fill.
	ups := migrationFiles(t, ".up.sql")
	want, err := strconv.Atoi(strings.SplitN(ups[len(ups)-1], "_", 2)[0])
	if err != nil {
		t.Fatal(err)
	}
	if version != want || dirty {
		t.Fatalf("schema_migrations = (%d, dirty=%v), want (%d, false)", version, dirty, want)
	}

	type col struct{ typ, nullable, def string }
	columns := func(table string) map[string]col {
		rows, err := conn.Query(ctx, `SELECT column_name, data_type, is_nullable, coalesce(column_default, '')
			FROM information_schema.columns WHERE table_schema = 'public' AND table_name = $1`, table)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]col{}
		for rows.Next() {
			var name string
			var c col
			if err := rows.Scan(&name, &c.typ, &c.nullable, &c.def); err != nil {
				t.Fatal(err)
			}
			out[name] = c
		}
		return out
	}
	for _, table := range ledger.Tables {
		t.Run(table, func(t *testing.T) {
			got := columns(table)
			want := map[string]col{
				"id":         {"text", "NO", ""},
				"partner_id": {"text", "NO", ""},
				"v":          {"bigint", "NO", "0"},
				"cv":         {"ARRAY", "YES", ""},
				"ca":         {"ARRAY", "YES", ""},
			}
			numeric := map[string]bool{}
			for _, c := range ledger.NumericColumns[table] {
				numeric[c] = true
			}
			for _, c := range ledger.Columns[table] {
				if numeric[c] {
					want[c] = col{"bigint", "NO", "0"}
				} else {
					want[c] = col{"text", "NO", "''::text"}
				}
			}
			for name, w := range want {
				if g, ok := got[name]; !ok {
					t.Errorf("column %s.%s missing", table, name)
				} else if g != w {
					t.Errorf("column %s.%s = %+v, want %+v", table, name, g, w)
				}
			}
			for name := range got {
				if _, ok := want[name]; !ok {
					t.Errorf("column %s.%s is not in ledger.Columns", table, name)
				}
			}
		})
	}

	jc := columns("journal")
	for _, name := range []string{"partner_id", "seq", "type", "reason", "ts_ms", "changes", "applied_at"} {
		if _, ok := jc[name]; !ok {
			t.Errorf("journal.%s missing", name)
		}
	}
	if jc["changes"].typ != "jsonb" {
		t.Errorf("journal.changes type = %q, want jsonb", jc["changes"].typ)
	}

	if _, err := conn.Exec(ctx, `INSERT INTO journal (partner_id, seq) VALUES ('p', 1)`); err != nil {
		t.Fatal(err)
	}
	for _, stmt := range []string{`UPDATE journal SET type = 'x'`, `DELETE FROM journal`} {
		if _, err := conn.Exec(ctx, stmt); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: err = %v, want the append-only refusal", stmt, err)
		}
	}
}

// TestMigrationDown checks the down migration removes everything the up
// migration made, so the pair stays usable.
func TestMigrationDown(t *testing.T) {
	dbURL := ledgertest.MustDatabase(t)
	ctx := ctxT(t, 30*time.Second)
	if err := Migrate(ctx, dbURL); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	downs := migrationFiles(t, ".down.sql")
	slices.Reverse(downs)
	for _, name := range downs {
		sql, err := migrationsFS.ReadFile("migrations/" + name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Exec(ctx, string(sql)); err != nil {
			t.Fatalf("down migration %s: %v", name, err)
		}
	}
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM information_schema.tables
		WHERE table_schema = 'public' AND table_name <> 'schema_migrations'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("after down: %d tables left, want 0", n)
	}
}

// migrationFiles lists the embedded migrations with the suffix, in order.
func migrationFiles(t *testing.T, suffix string) []string {
	t.Helper()
	entries, err := migrationsFS.ReadDir("migrations")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), suffix) {
			out = append(out, e.Name())
		}
	}
	if len(out) == 0 {
		t.Fatalf("no embedded %s migrations", suffix)
	}
	return out // ReadDir sorts by name: 0001_, 0002_, ...
}

func TestMigrateUnreachable(t *testing.T) {
	ctx := ctxT(t, 20*time.Second)
	err := Migrate(ctx, "postgres://postgres@127.0.0.1:1/none?sslmode=disable")
	if err == nil {
		t.Fatal("Migrate on a closed port: want an error")
	}
}
