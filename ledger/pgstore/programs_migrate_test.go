package pgstore

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/golang-migrate/migrate/v4"
	"github.com/golang-migrate/migrate/v4/source/iofs"
	"github.com/jackc/pgx/v5"

	"github.com/antaca/antaca/authz"
	"github.com/antaca/antaca/ledger"
	"github.com/antaca/antaca/ledger/ledgertest"
)

// TestMigrationGivesPartnersDefaultPrograms writes a partner, a card and a
// hold the way the schema before programs did (version 11), migrates, and
// checks that the partner's BIN became its default program in Postgres, in
// a Redis rebuilt from it, and in a Redis that kept its state; the card
// routes and authorizes as before.
func TestMigrationGivesPartnersDefaultPrograms(t *testing.T) {
	ctx := ctxT(t, 60*time.Second)
	dbURL := ledgertest.MustDatabase(t)
	murl, err := migrateURL(dbURL)
	must(t, err)
	src, err := iofs.New(migrationsFS, "migrations")
	must(t, err)
	m, err := migrate.NewWithSourceInstance("iofs", src, murl)
	must(t, err)
	if err := m.Migrate(11); err != nil && !errors.Is(err, migrate.ErrNoChange) {
		t.Fatalf("migrating to 11: %v", err)
	}
	_, _ = m.Close()
	conn, err := pgx.Connect(ctx, dbURL)
	must(t, err)
	defer conn.Close(context.Background())
	for _, q := range []string{
		`INSERT INTO partners (id, partner_id, v, name, bin, currency, funding_model, created_at, digital_first)
		 VALUES ('oldp', 'oldp', 1, 'Old Bank', '49500001', 'EUR', 'CREDIT', '1767225600000', 'true'),
		        ('nobin', 'nobin', 1, 'No BIN', '', 'EUR', 'CREDIT', '1767225600000', '')`,
		`INSERT INTO customers (id, partner_id, v, first_name, kyc_status) VALUES ('oldc', 'oldp', 1, 'Ada', 'VERIFIED')`,
		`INSERT INTO user_balances (id, partner_id, v, customer_id, currency, available, state)
		 VALUES ('oldb', 'oldp', 2, 'oldc', 'EUR', 5000, 'ACTIVE')`,
		`INSERT INTO funding (id, partner_id, v, currency, total_in) VALUES ('oldp:EUR', 'oldp', 1, 'EUR', 5000)`,
		`INSERT INTO cards (id, partner_id, v, customer_id, balance_id, type, status, pan_hash, bin, last4, expiry)
		 VALUES ('oldcard', 'oldp', 1, 'oldc', 'oldb', 'VIRTUAL', 'ACTIVE', 'tok-4950000112345678', '49500001', '5678', '4912')`,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	must(t, Migrate(ctx, dbURL))

	var id, name, ranges, df string
	var v int64
	must(t, conn.QueryRow(ctx, `SELECT id, name, bin_ranges, digital_first, v FROM programs WHERE partner_id = 'oldp'`).Scan(&id, &name, &ranges, &df, &v))
	if id != "prg_oldp" || name != "Old Bank" || ranges != `[{"from":"49500001","to":"49500001"}]` || df != "true" || v != 1 {
		t.Fatalf("default program = %s %s %s %s v%d", id, name, ranges, df, v)
	}
	var n int
	must(t, conn.QueryRow(ctx, `SELECT count(*) FROM programs WHERE partner_id = 'nobin'`).Scan(&n))
	if n != 0 {
		t.Errorf("a partner without a BIN got %d programs", n)
	}

	// A Redis rebuilt from this Postgres routes the old card by its program.
	pool, err := OpenPool(ctx, dbURL)
	must(t, err)
	defer pool.Close()
	rdb, prefix := ledgertest.MustRedis(t)
	keys := ledger.Keys{Prefix: prefix}
	if _, err := Rebuild(ctx, rdb, keys, Postgres(pool)); err != nil {
		t.Fatal(err)
	}
	l, err := ledger.New(rdb, ledger.Options{Prefix: prefix})
	must(t, err)
	routes, err := l.Routes(ctx)
	must(t, err)
	if r, ok := authz.NewRouteTable(routes).Lookup("4950000112345678"); !ok || r.PartnerID != "oldp" || r.ProgramID != "prg_oldp" {
		t.Fatalf("route after rebuild = %+v %v", r, ok)
	}
	eng := &ledger.Engine{L: l, Token: func(p string) string { return "tok-" + p }}
	info, err := eng.FindCard(ctx, "4950000112345678")
	must(t, err)
	if info.ID != "oldcard" || info.ProgramID != "prg_oldp" {
		t.Fatalf("card = %+v", info)
	}
	p, err := l.Program(ctx, "oldp", "prg_oldp")
	must(t, err)
	if !p.DigitalFirst || p.Currency != "EUR" || p.StandIn.Policy != authz.StandInDecline {
		t.Errorf("program = %+v", p)
	}
	if made, err := l.EnsureDefaultPrograms(ctx); err != nil || made != 0 {
		t.Errorf("EnsureDefaultPrograms after the rebuild = %d, %v; want 0", made, err)
	}

	// A Redis that kept its state from before programs: the switch gives
	// the partner the same program at start.
	must(t, rdb.Del(ctx, keys.Row("oldp", "programs", "prg_oldp"), keys.Ranges(), keys.Programs("oldp")).Err())
	if made, err := l.EnsureDefaultPrograms(ctx); err != nil || made != 1 {
		t.Fatalf("EnsureDefaultPrograms = %d, %v; want 1", made, err)
	}
	again, err := l.Program(ctx, "oldp", "prg_oldp")
	must(t, err)
	if again.Name != p.Name || again.CreatedAt != p.CreatedAt || len(again.Ranges) != 1 || again.Ranges[0] != p.Ranges[0] || again.Version != 1 {
		t.Errorf("program made in Redis = %+v, want %+v", again, p)
	}
	eng2 := &ledger.Engine{L: l, Token: func(p string) string { return "tok-" + p }}
	d := (&authz.Engine{Ledger: eng2}).Authorize(ctx, &authz.Request{Kind: authz.KindAuthorization, PAN: "4950000112345678",
		TxnType: authz.TxnPurchase, Amount: 100, Currency: "978", STAN: "000001", RRN: "RRN1", TransmissionTime: "0101000000", AcquirerID: "1"})
	if d.Reason != authz.ReasonApproved {
		t.Fatalf("authorization on the migrated card: %s", d.Reason)
	}
}
