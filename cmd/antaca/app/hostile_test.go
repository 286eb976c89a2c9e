package app_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/antaca/antaca/cmd/antaca/app"
	"github.com/antaca/antaca/ledger"
)

// TestHostileInputAgainstOneSwitch sends the hostile inputs that once
// stalled the journal to one real switch — ISO fields with NUL and control
// bytes, impossible dates, REST text with NUL, control characters, invalid
// UTF-8 and duplicate keys — and wants each refused with its format error
// and nothing changed; the approvals around them reach Postgres, and the
// harness's audit at the end (rows, money, the journal's sequence numbers)
// is clean.
func TestHostileInputAgainstOneSwitch(t *testing.T) {
	const password = "correct horse battery staple"
	h := startApp(t, func(c *app.Config) { c.AdminUser, c.AdminPassword = "root", password })
	p := h.newProgram(ledger.FundingDeposit, 1_000_000, 50_000)
	card := p.virtualCard(p.balance)
	c := h.client("cmf")
	approve := func(what string) {
		t.Helper()
		if got := field(t, h.send(c, txn{MTI: "0100", PAN: card.PAN, Amount: 100}).Resp, 39); got != "0000" {
			t.Fatalf("%s: DE39 %s, want 0000", what, got)
		}
	}
	approve("before")
	before := p.user(p.balance)

	for _, tc := range []struct {
		name  string
		field int
		value string
	}{
		{"DE41 of eight NUL bytes", 41, strings.Repeat("\x00", 8)},
		{"DE37 with a NUL", 37, "4159100\x000001"},
		{"DE42 with a control byte", 42, "MERCHANT\x01000001"},
		{"DE7 9999999999", 7, "9999999999"},
		{"DE12 256161", 12, "256161"},
		{"DE13 1399", 13, "1399"},
	} {
		m := c.NewMessage("0100")
		de7 := time.Now().UTC().Format("0102150405")
		for id, v := range map[int]string{2: card.PAN, 3: "000000", 4: "000000000100", 7: de7, 11: c.NextSTAN(),
			12: de7[4:], 13: de7[:4], 18: "5411", 22: "051", 32: acquirer, 37: newRRN(), 41: "TERM0001",
			42: "MERCHANT0000001", 49: "978"} {
			must(t, m.Field(id, v))
		}
		must(t, m.Field(tc.field, tc.value))
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err := c.Send(ctx, m)
		cancel()
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := field(t, resp, 39); got != "9100" {
			t.Errorf("%s: DE39 %s, want 9100", tc.name, got)
		}
	}
	if after := p.user(p.balance); after != before {
		t.Fatalf("hostile ISO input changed the balance: %+v, before %+v", after, before)
	}

	base := "http://" + h.App.HTTPAddr()
	post := func(path, token, body string) (int, string) {
		t.Helper()
		req, err := http.NewRequest("POST", base+path, strings.NewReader(body))
		must(t, err)
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		must(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	status, body := post("/admin/login", "", `{"username":"root","password":"`+password+`"}`)
	if status != 200 {
		t.Fatalf("login: %d %s", status, body)
	}
	token := body[strings.Index(body, `"token":"`)+9:]
	token = token[:strings.Index(token, `"`)]
	for _, tc := range []struct{ name, body, code string }{
		{"NUL in a name", `{"firstName":"a\u0000b","lastName":"x"}`, "INVALID_TEXT"},
		{"control character", `{"firstName":"a\u0007b","lastName":"x"}`, "INVALID_TEXT"},
		{"invalid UTF-8", "{\"firstName\":\"a\xffb\",\"lastName\":\"x\"}", "INVALID_TEXT"},
		{"duplicate key", `{"firstName":"a","firstName":"b","lastName":"x"}`, "DUPLICATE_KEY"},
	} {
		status, body := post("/admin/partners/"+p.partner+"/customers", token, tc.body)
		if status != 400 || !strings.Contains(body, `"`+tc.code+`"`) {
			t.Errorf("%s: %d %s, want 400 %s", tc.name, status, body, tc.code)
		}
	}
	approve("after")
	fctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	must(t, h.App.FlushJournal(fctx))
	var quarantined int
	must(t, h.App.Pool.QueryRow(fctx, `SELECT count(*) FROM journal_quarantine`).Scan(&quarantined))
	if quarantined != 0 {
		t.Fatalf("%d journal entries quarantined: hostile input reached the journal", quarantined)
	}
	p.checkMoney()
}
