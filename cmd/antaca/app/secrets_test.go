package app_test

import (
	"encoding/hex"
	"regexp"
	"strings"
	"testing"

	"github.com/antaca/antaca/authz"
	"github.com/antaca/antaca/ledger"
)

// TestNoCardDataAtRest runs authorizations that carry every kind of card
// secret (PAN, CVV2 right and wrong, PIN block right and wrong, declines,
// a reversal, a PIN change), then reads every row of every Postgres table
// and everything the switch logged at debug level, and finds no PAN, CVV2,
// PIN or PIN block in clear. CVV2s and PINs are short, so they are looked
// for as JSON string values (every value is one in row_to_json and in the
// JSON logs), where a chance match in an id or a date cannot happen.
func TestNoCardDataAtRest(t *testing.T) {
	h := startApp(t, nil)
	p := h.newProgram(ledger.FundingDeposit, 100_000, 50_000)
	c := h.client("cmf")
	virt := p.virtualCard(p.balance)
	phys := p.physicalCard(p.balance, authz.StatusActive, "4821")
	full, err := h.App.Issuing.FullData(h.ctx, p.partner, virt.ID)
	must(t, err)
	right, err := h.App.Keys.EncodePINBlock("4821", phys.PAN)
	must(t, err)
	wrong, err := h.App.Keys.EncodePINBlock("7391", phys.PAN)
	must(t, err)
	expect := func(s *sent, code string) {
		t.Helper()
		if got := field(t, s.Resp, 39); got != code {
			t.Fatalf("DE39 = %s, want %s", got, code)
		}
	}
	wrongCVV := "000"
	if full.CVV == wrongCVV {
		wrongCVV = "001"
	}

	auth := h.send(c, txn{MTI: "0100", PAN: virt.PAN, Amount: 1_000, CVV2: full.CVV})
	expect(auth, "0000")
	expect(h.send(c, txn{MTI: "0100", PAN: virt.PAN, Amount: 1_000, CVV2: wrongCVV}), "1000")
	expect(h.send(c, txn{MTI: "0100", PAN: phys.PAN, Amount: 500, PINBlock: right}), "0000")
	expect(h.send(c, txn{MTI: "0100", PAN: phys.PAN, Amount: 500, PINBlock: wrong}), "1017")
	expect(h.send(c, txn{MTI: "0200", PAN: phys.PAN, Amount: 700, PINBlock: right}), "0000")
	expect(h.send(c, txn{MTI: "0100", PAN: virt.PAN, Amount: 60_000}), "1016")
	expect(h.send(c, txn{MTI: "0100", PAN: virt.PAN, Amount: 100, Expiry: "0101"}), "1001")
	rev := h.send(c, txn{MTI: "0400", PAN: virt.PAN, Amount: 1_000, RRN: auth.RRN, Original: auth})
	if got := field(t, rev.Resp, 39); got != "4000" {
		t.Fatalf("reversal: %s", got)
	}
	must(t, h.App.Issuing.SetPIN(h.ctx, p.partner, phys.ID, "5930"))
	_, err = h.App.Issuing.ResetCVV(h.ctx, p.partner, virt.ID)
	must(t, err)
	after, err := h.App.Issuing.FullData(h.ctx, p.partner, virt.ID)
	must(t, err)
	h.audit("after the secrets went by") // flushes the journal to Postgres

	var dump strings.Builder
	for _, table := range append(append([]string{}, ledger.Tables...), "journal", "admins") {
		rows, err := h.App.Pool.Query(h.ctx, "SELECT row_to_json(x)::text FROM "+table+" x")
		must(t, err)
		n := 0
		for rows.Next() {
			var s string
			must(t, rows.Scan(&s))
			dump.WriteString(s + "\n")
			n++
		}
		rows.Close()
		must(t, rows.Err())
		if n == 0 && table != "admins" {
			t.Fatalf("table %s is empty: the journal did not reach Postgres", table)
		}
	}
	logs := h.logs.String()
	if !strings.Contains(logs, `"reason":"INSUFFICIENT_USER_FUNDS"`) {
		t.Fatalf("the decline log lines are missing: %.500s", logs)
	}
	secrets := map[string]string{
		"virtual PAN": virt.PAN, "physical PAN": phys.PAN,
		"CVV2": `"` + full.CVV + `"`, "reset CVV2": `"` + after.CVV + `"`, "wrong CVV2": `"` + wrongCVV + `"`,
		"PIN": `"4821"`, "new PIN": `"5930"`, "wrong PIN": `"7391"`,
		"PIN block": strings.ToUpper(hex.EncodeToString(right)), "wrong PIN block": strings.ToUpper(hex.EncodeToString(wrong)),
	}
	for where, text := range map[string]string{"Postgres": dump.String(), "the logs": logs} {
		for name, secret := range secrets {
			if strings.Contains(strings.ToUpper(text), strings.ToUpper(secret)) {
				t.Errorf("%s hold the %s in clear", where, name)
			}
		}
		for _, field := range []string{`"cvv"`, `"cvv2"`, `"pin"`, `"cardNo"`} {
			if strings.Contains(text, field) {
				t.Errorf("%s have a %s field", where, field)
			}
		}
	}
	// The logs name cards by masked PAN only: first six and last four.
	masked := regexp.MustCompile(`^\d{6}\*+\d{4}$`)
	pans := regexp.MustCompile(`"pan":"([^"]*)"`).FindAllStringSubmatch(logs, -1)
	if len(pans) == 0 {
		t.Fatal("no log line names a card")
	}
	for _, m := range pans {
		if !masked.MatchString(m[1]) {
			t.Errorf("a log line shows the PAN as %q", m[1])
		}
	}
}
