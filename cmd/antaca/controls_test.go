package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/antaca/antaca/authz"
	"github.com/antaca/antaca/ledger/ledgertest"
	"github.com/antaca/antaca/ledger/pgstore"
)

// TestControlsReplayCommand: `antaca controls replay` reads the controls
// file and the program's journal and prints the report as JSON; a missing
// program fails.
func TestControlsReplayCommand(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dbURL := ledgertest.MustDatabase(t)
	if err := pgstore.Migrate(ctx, dbURL); err != nil {
		t.Fatal(err)
	}
	pool, err := pgstore.OpenPool(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	now := time.Now().UnixMilli()
	for _, q := range []string{
		`INSERT INTO programs (id, partner_id, v, name, currency) VALUES ('prg_cli', 'cli', 1, 'CLI', 'EUR')`,
		`INSERT INTO cards (id, partner_id, v, program_id) VALUES ('k1', 'cli', 1, 'prg_cli')`,
	} {
		if _, err := pool.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := pool.Exec(ctx, `INSERT INTO journal (partner_id, seq, type, reason, ts_ms, changes, meta) VALUES
		('cli', 1, 'reserve', 'APPROVED', $1, '[{"t":"holds","id":"h1","v":"1","set":{"approved":"700","amount":"700"}}]',
		 '{"mti":"0100","card":"k1","amount":700,"mcc":"7995","txn":"00"}')`, now-1000); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "new.json")
	if err := os.WriteFile(file, []byte(`{"mcc_block": ["7995"]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, "controls", "replay", "--database-url", dbURL, "--program", "prg_cli", "--controls", file, "--since", "1h")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var rep authz.ReplayReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("output %q: %v", out, err)
	}
	if rep.NewlyDeclined.Count != 1 || rep.NewlyDeclined.Amount != 700 || rep.ByReason[authz.ReasonControlMCC].Count != 1 {
		t.Fatalf("report = %+v", rep)
	}
	if code, _, _ := runCLI(t, "controls", "replay", "--database-url", dbURL, "--program", "nope", "--controls", file); code == 0 {
		t.Error("an unknown program replayed")
	}
}
