package app_test

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/antaca/antaca/cmd/antaca/app"
	"github.com/antaca/antaca/ledger"
	"github.com/antaca/antaca/ledger/ledgertest"
)

// sink is an SMTP server inside the test that keeps every message.
type sink struct{ got chan string }

type sinkSession struct{ s *sink }

func (x sinkSession) Reset()                               {}
func (x sinkSession) Logout() error                        { return nil }
func (x sinkSession) Mail(string, *smtp.MailOptions) error { return nil }
func (x sinkSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (x sinkSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	x.s.got <- string(b)
	return err
}
func (s *sink) NewSession(*smtp.Conn) (smtp.Session, error) { return sinkSession{s}, nil }

// TestLowBalanceEmailThroughTheSwitch: with ANTACA_SMTP_* set, an ISO
// authorization that takes a partner deposit below its threshold sends
// the partner's notice e-mail; a second one while it stays below does not.
func TestLowBalanceEmailThroughTheSwitch(t *testing.T) {
	sk := &sink{got: make(chan string, 8)}
	srv := smtp.NewServer(sk)
	srv.Domain = "localhost"
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	h := startApp(t, func(c *app.Config) {
		c.SMTPAddr, c.SMTPFrom, c.SMTPSecurity = ln.Addr().String(), "notices@antaca.test", "none"
	})
	ctx := context.Background()
	l := h.App.Ledger
	// A DEPOSIT program whose deposit (8 000) alerts below 5 000, and the
	// partner's notice address.
	p := &program{h: h, partner: ledgertest.UniqueName("prt"), bin: "58765432", balanceCurrencyNum: "978", pbal: ledger.NewID("pbl"),
		customer: ledger.NewID("cus")}
	must(t, l.CreatePartner(ctx, ledger.Partner{ID: p.partner, Name: "Notice program", BIN: p.bin, Currency: "EUR", FundingModel: ledger.FundingDeposit}))
	must(t, l.CreatePartnerBalance(ctx, p.partner, p.pbal, ledger.FundingDeposit, "EUR", 5_000))
	_, err = l.ReloadPartnerBalance(ctx, p.partner, p.pbal, 8_000, "")
	must(t, err)
	must(t, l.CreateCustomer(ctx, ledger.Customer{ID: p.customer, PartnerID: p.partner, FirstName: "Ada", LastName: "Lovelace"}))
	must(t, l.SetKYC(ctx, p.partner, p.customer, "VERIFIED"))
	p.balance = p.newBalance(10_000)
	if _, err := h.App.Pool.Exec(ctx, `INSERT INTO partner_notice_emails (partner_id, addresses) VALUES ($1, '{ops@partner.test}')`, p.partner); err != nil {
		t.Fatal(err)
	}
	card := p.virtualCard(p.balance)
	c := h.client("cmf")
	if got := field(t, h.send(c, txn{MTI: "0100", PAN: card.PAN, Amount: 4_000}).Resp, 39); got != "0000" {
		t.Fatalf("authorization: %s", got)
	}
	select {
	case m := <-sk.got:
		if !strings.Contains(m, "To: <ops@partner.test>") || !strings.Contains(m, p.pbal) || !strings.Contains(m, "Available: 4000 EUR") {
			t.Errorf("e-mail:\n%s", m)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no e-mail")
	}
	if got := field(t, h.send(c, txn{MTI: "0100", PAN: card.PAN, Amount: 1_000}).Resp, 39); got != "0000" {
		t.Fatalf("second authorization: %s", got)
	}
	select {
	case m := <-sk.got:
		t.Errorf("a second e-mail while below:\n%s", m)
	case <-time.After(300 * time.Millisecond):
	}
	p.checkMoney()
}
