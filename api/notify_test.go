package api_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/antaca/antaca/api"
	"github.com/antaca/antaca/authz"
	"github.com/antaca/antaca/ledger"
	"github.com/antaca/antaca/ledger/pgstore"
	"github.com/antaca/antaca/simulator/webhook"
)

// lowEvent is a partner_balance.low delivery as a receiver decodes it.
type lowEvent struct {
	ID        string    `json:"id"`
	Type      string    `json:"type"`
	CreatedAt time.Time `json:"created_at"`
	PartnerID string    `json:"partner_id"`
	Data      struct {
		BalanceID string `json:"balanceId"`
		Type      string `json:"type"`
		Currency  string `json:"currency"`
		Available int64  `json:"available"`
		Threshold int64  `json:"threshold"`
	} `json:"data"`
}

// lowHook is the operator's low-balance webhook receiver: it checks the
// signature with the documented verifier when it has a secret, and
// answers the next status of fail (then 200).
type lowHook struct {
	url  string
	got  chan lowEvent
	mu   sync.Mutex
	fail []int
	sigs []string
}

func newLowBalanceHook(t *testing.T, secret string, fail ...int) *lowHook {
	h := &lowHook{got: make(chan lowEvent, 64), fail: fail}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		h.sigs = append(h.sigs, r.Header.Get(webhook.Header))
		status := http.StatusOK
		if len(h.fail) > 0 {
			status, h.fail = h.fail[0], h.fail[1:]
		}
		h.mu.Unlock()
		if secret != "" {
			if err := webhook.Verify(secret, r.Header.Get(webhook.Header), body, webhook.DefaultTolerance, time.Now()); err != nil {
				t.Errorf("low-balance webhook signature: %v", err)
				w.WriteHeader(http.StatusBadRequest)
				return
			}
		}
		if status != http.StatusOK {
			w.WriteHeader(status)
			return
		}
		var ev lowEvent
		if err := json.Unmarshal(body, &ev); err != nil {
			t.Errorf("low-balance webhook body: %v", err)
		}
		h.got <- ev
	}))
	t.Cleanup(srv.Close)
	h.url = srv.URL + "/low"
	return h
}

func withLowBalanceWebhook(url, secret string) envOption {
	return func(c *api.Config) {
		c.LowBalanceWebhook, c.LowBalanceWebhookSecret = url, secret
		c.WebhookBackoff, c.WebhookMaxBackoff, c.WebhookPoll = 20*time.Millisecond, 100*time.Millisecond, 20*time.Millisecond
	}
}

// mailbox is an SMTP server inside the test (go-smtp): STARTTLS with the
// test CA's localhost certificate, AUTH PLAIN only after STARTTLS, and
// answers scripted per recipient.
type mailbox struct {
	t    *testing.T
	addr string
	srv  *smtp.Server
	user string
	pass string
	mu   sync.Mutex
	// refuse maps a recipient to the SMTP answers its next RCPT TOs get
	// (then it is accepted).
	refuse map[string][]*smtp.SMTPError
	mails  []receivedMail
	got    chan receivedMail
	tls    []bool // per session: whether it was under TLS when it sent
}

type receivedMail struct {
	From string
	To   []string
	Data string
}

func newMailbox(t *testing.T, implicitTLS bool) *mailbox {
	t.Helper()
	loadFixture(t)
	cert, err := tls.X509KeyPair(fixture.serverCert, fixture.serverKey)
	if err != nil {
		t.Fatal(err)
	}
	mb := &mailbox{t: t, user: "antaca", pass: "s3cret-mail", refuse: map[string][]*smtp.SMTPError{}, got: make(chan receivedMail, 64)}
	mb.srv = smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) { return &mailSession{mb: mb, conn: c}, nil }))
	mb.srv.Domain = "localhost"
	mb.srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	mb.srv.ReadTimeout, mb.srv.WriteTimeout = 10*time.Second, 10*time.Second
	var l net.Listener
	if implicitTLS {
		l, err = tls.Listen("tcp", "127.0.0.1:0", mb.srv.TLSConfig)
	} else {
		l, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		t.Fatal(err)
	}
	mb.addr = l.Addr().String()
	go func() { _ = mb.srv.Serve(l) }()
	t.Cleanup(func() { _ = mb.srv.Close() })
	return mb
}

// config is an SMTPConfig for the mailbox with the given security.
func (mb *mailbox) config(security string) api.SMTPConfig {
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(fixture.caCert)
	return api.SMTPConfig{Addr: mb.addr, From: "notices@antaca.test", Security: security, Username: mb.user, Password: mb.pass,
		TLS: &tls.Config{RootCAs: roots, ServerName: "localhost", MinVersion: tls.VersionTLS12}, Timeout: 5 * time.Second}
}

func (mb *mailbox) wait(t *testing.T) receivedMail {
	t.Helper()
	select {
	case m := <-mb.got:
		return m
	case <-time.After(15 * time.Second):
		t.Fatal("no e-mail arrived")
		return receivedMail{}
	}
}

func (mb *mailbox) none(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case m := <-mb.got:
		t.Fatalf("an unexpected e-mail: %q to %v", subjectOf(m.Data), m.To)
	case <-time.After(d):
	}
}

type mailSession struct {
	mb     *mailbox
	conn   *smtp.Conn
	authed bool
	from   string
	to     []string
}

func (s *mailSession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *mailSession) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if username != s.mb.user || password != s.mb.pass {
			return smtp.ErrAuthFailed
		}
		s.authed = true
		return nil
	}), nil
}

func (s *mailSession) Mail(from string, _ *smtp.MailOptions) error {
	if !s.authed {
		return smtp.ErrAuthRequired
	}
	s.from = from
	return nil
}

func (s *mailSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.mb.mu.Lock()
	defer s.mb.mu.Unlock()
	if answers := s.mb.refuse[to]; len(answers) > 0 {
		s.mb.refuse[to] = answers[1:]
		return answers[0]
	}
	s.to = append(s.to, to)
	return nil
}

func (s *mailSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	_, underTLS := s.conn.TLSConnectionState()
	m := receivedMail{From: s.from, To: s.to, Data: string(b)}
	s.mb.mu.Lock()
	s.mb.mails = append(s.mb.mails, m)
	s.mb.tls = append(s.mb.tls, underTLS)
	s.mb.mu.Unlock()
	s.mb.got <- m
	return nil
}

func (s *mailSession) Reset()        { s.from, s.to = "", nil }
func (s *mailSession) Logout() error { return nil }

func subjectOf(data string) string {
	for _, line := range strings.Split(data, "\r\n") {
		if v, ok := strings.CutPrefix(line, "Subject: "); ok {
			return v
		}
	}
	return ""
}

func headerOf(data, name string) string {
	for _, line := range strings.Split(data, "\r\n") {
		if v, ok := strings.CutPrefix(line, name+": "); ok {
			return v
		}
	}
	return ""
}

// withMail sends notice e-mails through mb and runs the notice loop, with
// fast retries.
func withMail(t *testing.T, mb *mailbox, security string) envOption {
	return func(c *api.Config) {
		m, err := api.NewSMTPMailer(mb.config(security))
		if err != nil {
			t.Fatal(err)
		}
		c.Mailer = m
		c.WebhookBackoff, c.WebhookMaxBackoff, c.WebhookPoll = 20*time.Millisecond, 100*time.Millisecond, 20*time.Millisecond
	}
}

// runNotices runs the env's notice loop until the test ends.
func (e *env) runNotices() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = e.srv.RunNotices(ctx); close(done) }()
	e.t.Cleanup(func() { cancel(); <-done })
}

// TestLowBalanceEmail: a partner with notice addresses gets one e-mail per
// crossing below the threshold, over STARTTLS with AUTH PLAIN; staying
// below, a restart and the periodic check send nothing more; after the
// balance was back above, the next crossing sends again.
func TestLowBalanceEmail(t *testing.T) {
	t.Parallel()
	mb := newMailbox(t, false)
	hook := newLowBalanceHook(t, "op-secret")
	dbOpt := withLowBalanceWebhook(hook.url, "op-secret")
	e := newEnv(t, dbOpt, withMail(t, mb, "starttls"))
	e.runWebhooks()
	e.runNotices()
	p := e.newProgramWithThreshold("mailbank", "46000011", 20_000)
	// Addresses: validated, replaced as a whole, readable by managers.
	for _, bad := range []any{
		map[string]any{},
		map[string]any{"addresses": []string{"not-an-address"}},
		map[string]any{"addresses": []string{"Ops <ops@mailbank.test>"}},
		map[string]any{"addresses": []string{"ops@mailbank.test", "OPS@mailbank.test"}},
	} {
		if r := e.root.do("PUT", "/admin/partners/mailbank/notice-emails", bad, invalidRequest); r.status != 400 || r.code() != "VALIDATION_ERROR" {
			t.Errorf("PUT notice-emails %v: %d %s", bad, r.status, r.body)
		}
	}
	if r := e.root.do("PUT", "/admin/partners/nobody/notice-emails", map[string]any{"addresses": []string{}}); r.status != 404 {
		t.Errorf("unknown partner: %d %s", r.status, r.body)
	}
	e.root.json("PUT", "/admin/partners/mailbank/notice-emails", map[string]any{"addresses": []string{"ops@mailbank.test", "cfo@mailbank.test"}}, 200, nil)
	var addrs struct {
		Addresses []string `json:"addresses"`
	}
	e.newAdmin("mgr", "Manager").json("GET", "/admin/partners/mailbank/notice-emails", nil, 200, &addrs)
	if strings.Join(addrs.Addresses, ",") != "ops@mailbank.test,cfo@mailbank.test" {
		t.Fatalf("addresses = %v", addrs.Addresses)
	}
	if r := e.newAdmin("emp", "Employee").do("GET", "/admin/partners/mailbank/notice-emails", nil); r.status != 403 {
		t.Errorf("an Employee read the addresses: %d", r.status)
	}

	e.root.json("POST", "/admin/partners/mailbank/balances/"+p.pbal+"/reload", map[string]int{"amount": 30_000}, 200, nil)
	cid, bid := p.verifiedCustomer(t, "m1")
	reload := func(amount int64) {
		t.Helper()
		p.c.json("POST", "/secure/customers/"+cid+"/balances/"+bid+"/reload", map[string]int64{"amount": amount}, 200, nil)
	}
	reload(5_000) // 30 000 -> 25 000: above
	mb.none(t, 100*time.Millisecond)
	reload(10_000) // -> 15 000: below 20 000
	m := mb.wait(t)
	if m.From != "notices@antaca.test" || strings.Join(m.To, ",") != "ops@mailbank.test,cfo@mailbank.test" {
		t.Errorf("e-mail from %q to %v", m.From, m.To)
	}
	if s := subjectOf(m.Data); !strings.Contains(s, "mailbank") || !strings.Contains(s, "below") {
		t.Errorf("subject %q", s)
	}
	if !strings.Contains(m.Data, p.pbal) || !strings.Contains(m.Data, "15000") || !strings.Contains(m.Data, "20000") {
		t.Errorf("body does not name the balance, its amount and threshold:\n%s", m.Data)
	}
	mb.mu.Lock()
	if !mb.tls[0] {
		t.Error("the e-mail was sent without STARTTLS")
	}
	mb.mu.Unlock()
	// The same notice reached the operator's webhook, signed, with the
	// e-mail's Message-ID naming its event.
	ev := <-hook.got
	if ev.Type != "partner_balance.low" || ev.PartnerID != "mailbank" || ev.Data.Available != 15_000 {
		t.Errorf("operator webhook event %+v", ev)
	}
	if mid := headerOf(m.Data, "Message-ID"); !strings.Contains(mid, ev.ID) {
		t.Errorf("Message-ID %q does not name event %s", mid, ev.ID)
	}

	// Below and staying below: nothing more, not from a reload, not from
	// the periodic check, not from a restarted server on the same database.
	reload(1_000)
	e.srv.CheckPartnerBalances(context.Background())
	restarted := e.restart(dbOpt, withMail(t, mb, "starttls"))
	restarted.CheckPartnerBalances(context.Background())
	mb.none(t, 200*time.Millisecond)
	if got := e.metric("antaca_partner_balance_low_total", map[string]string{"partner": "mailbank"}); got != 1 {
		t.Errorf("antaca_partner_balance_low_total = %v, want 1", got)
	}

	// Back above (a partner reload), then below again: a second e-mail.
	e.root.json("POST", "/admin/partners/mailbank/balances/"+p.pbal+"/reload", map[string]int{"amount": 10_000}, 200, nil) // 14 000 -> 24 000
	reload(5_000)                                                                                                          // -> 19 000
	m2 := mb.wait(t)
	if !strings.Contains(m2.Data, "19000") || headerOf(m2.Data, "Message-ID") == headerOf(m.Data, "Message-ID") {
		t.Errorf("second e-mail:\n%s", m2.Data)
	}
	a, ok, err := pgstore.NewNotices(e.pool).Alert(context.Background(), p.pbal)
	if err != nil || !ok || !a.Low || a.Crossings != 2 || a.Available != 19_000 {
		t.Errorf("low-balance state = %+v (found %v, %v), want low after 2 crossings at 19000", a, ok, err)
	}
	waitFor(t, "two e-mails counted as sent", func() bool {
		return e.metric("antaca_notice_emails_total", map[string]string{"result": "sent"}) == 2
	})
	// Money: the credit balance gave the user what it lost.
	var lb balanceJSON
	p.c.json("GET", "/secure/customers/"+cid+"/balances/"+bid, nil, 200, &lb)
	var pb partnerBalanceJSON
	e.root.json("GET", "/admin/partners/mailbank/balances/"+p.pbal, nil, 200, &pb)
	if lb.Available+pb.Available != 30_000+10_000 {
		t.Errorf("user %d + credit %d, want the 40 000 reloaded into the program", lb.Available, pb.Available)
	}
}

// restart builds a second server on the env's stores (the same Redis
// prefix and database), as a switch restarted would be.
func (e *env) restart(opts ...envOption) *api.Server {
	e.t.Helper()
	cfg := api.Config{Ledger: e.ledger, Issuing: e.issuing, Keys: e.keys, Redis: e.rdb, RedisPrefix: e.apiKeys, DB: e.db,
		PasswordIterations: 1000}
	for _, o := range opts {
		o(&cfg)
	}
	s, err := api.New(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestLowBalanceFromTheNetwork: a DEPOSIT program's deposit taken below
// its threshold by an authorization, by a stand-in advice (forced post)
// and by a completion above its hold each raise the notice once per
// crossing; reversals bring the deposit back above, which the periodic
// check sees before the next crossing.
func TestLowBalanceFromTheNetwork(t *testing.T) {
	t.Parallel()
	mb := newMailbox(t, false)
	e := newEnv(t, withJournal(t), withMail(t, mb, "starttls"))
	e.runNotices()
	e.root.json("POST", "/admin/partners", map[string]any{"id": "netbank", "name": "net", "bin": "46100022", "currency": "EUR", "fundingModel": "DEPOSIT"}, 201, nil)
	var pb partnerBalanceJSON
	e.root.json("POST", "/admin/partners/netbank/balances", map[string]any{"type": "DEPOSIT", "currency": "EUR", "lowBalanceThreshold": 10_000}, 201, &pb)
	e.root.json("POST", "/admin/partners/netbank/balances/"+pb.ID+"/reload", map[string]any{"amount": 20_000}, 200, nil)
	e.root.json("PUT", "/admin/partners/netbank/notice-emails", map[string]any{"addresses": []string{"ops@netbank.test"}}, 200, nil)
	p := &program{id: "netbank", bin: "46100022", pbal: pb.ID, c: e.partnerClient("netbank")}
	cid, bid := p.verifiedCustomer(t, "n1")
	p.c.json("POST", "/secure/customers/"+cid+"/balances/"+bid+"/reload", map[string]int{"amount": 50_000}, 200, nil)
	var full fullDataJSON
	p.c.encryptedJSON("POST", "/secure/customers/"+cid+"/cards/virtual", map[string]string{"balanceId": bid}, 201, &full)
	n := e.network(t, full.CardNo)
	n.eng.Ledger.(*ledger.Engine).OnPartnerBelowThreshold = e.srv.PartnerBalanceCrossed
	deposit := func() int64 {
		var b partnerBalanceJSON
		e.root.json("GET", "/admin/partners/netbank/balances/"+pb.ID, nil, 200, &b)
		return b.Available
	}
	crossings := func() int64 {
		a, _, err := pgstore.NewNotices(e.pool).Alert(context.Background(), pb.ID)
		if err != nil {
			t.Fatal(err)
		}
		return a.Crossings
	}
	expectMail := func(what string, available int64) {
		t.Helper()
		m := mb.wait(t)
		if !strings.Contains(m.Data, pb.ID) || !strings.Contains(m.Data, "Available: "+strconv.FormatInt(available, 10)+" EUR") {
			t.Errorf("%s: e-mail does not show the deposit at %d:\n%s", what, available, m.Data)
		}
	}
	backAbove := func(s sent) {
		t.Helper()
		if d := n.send(authz.KindReversal, "0400", authz.TxnPurchase, s.req.Amount, &s, nil); d.d.Reason != authz.ReasonReversalAccepted {
			t.Fatalf("reversal: %s", d.d.Reason)
		}
		e.srv.CheckPartnerBalances(context.Background())
	}

	// 1. An authorization: 20 000 -> 8 000.
	auth := n.auth(12_000)
	if auth.d.Reason != authz.ReasonApproved {
		t.Fatalf("authorization: %s", auth.d.Reason)
	}
	expectMail("authorization", 8_000)
	// A second one while below: no notice.
	small := n.auth(1_000)
	mb.none(t, 100*time.Millisecond)
	backAbove(small)
	backAbove(auth) // 20 000: above again, seen by the periodic check
	if got := deposit(); got != 20_000 {
		t.Fatalf("deposit after reversals = %d", got)
	}

	// 2. A stand-in advice (0220 without an original): forced post 15 000.
	adv := n.send(authz.KindFinancialAdvice, "0220", authz.TxnPurchase, 15_000, nil, nil)
	if adv.d.Reason != authz.ReasonAdviceAccepted {
		t.Fatalf("stand-in advice: %s", adv.d.Reason)
	}
	expectMail("stand-in advice", 5_000)
	backAbove(adv) // the reversal gives the 15 000 back

	// 3. A completion above its hold: authorize 5 000 (deposit 15 000,
	// above), complete with 12 000 (deposit 8 000).
	hold := n.auth(5_000)
	mb.none(t, 100*time.Millisecond)
	done := n.send(authz.KindAuthorizationAdvice, "0120", authz.TxnPurchase, 12_000, &hold, nil)
	if done.d.Reason != authz.ReasonAdviceAccepted || done.d.Amount != 12_000 {
		t.Fatalf("completion above the hold: %s %d", done.d.Reason, done.d.Amount)
	}
	expectMail("completion above the hold", 8_000)
	if got := crossings(); got != 3 {
		t.Errorf("crossings = %d, want 3", got)
	}
	// Money: the deposit and the user's balance both went down by what
	// stands posted (12 000), nothing else.
	var lb balanceJSON
	p.c.json("GET", "/secure/customers/"+cid+"/balances/"+bid, nil, 200, &lb)
	if got := deposit(); got != 8_000 || lb.Available != 50_000-12_000 || lb.Held != 0 {
		t.Errorf("deposit %d, user available %d held %d; want 8000, 38000, 0", got, lb.Available, lb.Held)
	}
}

// TestEmailRetries: a recipient refused for now (451) is tried again with
// the same Message-ID until accepted; one refused for good (550) is given
// up at once; implicit TLS works; a wrong password is retried, never lost.
func TestEmailRetries(t *testing.T) {
	t.Parallel()
	t.Run("temporary then accepted", func(t *testing.T) {
		t.Parallel()
		mb := newMailbox(t, false)
		mb.refuse["ops@retry.test"] = []*smtp.SMTPError{{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}}
		e := newEnv(t, withMail(t, mb, "starttls"))
		e.runNotices()
		crossWithAddresses(t, e, "retrybank", "46200033", "ops@retry.test")
		m := mb.wait(t)
		if strings.Join(m.To, ",") != "ops@retry.test" {
			t.Errorf("to %v", m.To)
		}
		waitFor(t, "a retry and a send counted", func() bool {
			return e.metric("antaca_notice_emails_total", map[string]string{"result": "retry"}) == 1 &&
				e.metric("antaca_notice_emails_total", map[string]string{"result": "sent"}) == 1
		})
		// The send is counted before its row is marked SENT: wait for it.
		waitFor(t, "the e-mail recorded SENT after 2 attempts", func() bool {
			es, err := pgstore.NewNotices(e.pool).Emails(context.Background(), "retrybank", 10)
			return err == nil && len(es) == 1 && es[0].State == "SENT" && es[0].Attempts == 2
		})
	})
	t.Run("refused for good", func(t *testing.T) {
		t.Parallel()
		mb := newMailbox(t, false)
		mb.refuse["gone@refused.test"] = []*smtp.SMTPError{{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}}
		e := newEnv(t, withMail(t, mb, "starttls"))
		e.runNotices()
		crossWithAddresses(t, e, "refusedbank", "46300044", "gone@refused.test")
		waitFor(t, "the e-mail given up", func() bool {
			return e.metric("antaca_notice_emails_total", map[string]string{"result": "failed"}) == 1
		})
		es, err := pgstore.NewNotices(e.pool).Emails(context.Background(), "refusedbank", 10)
		if err != nil || len(es) != 1 || es[0].State != "FAILED" || es[0].Attempts != 1 || !strings.Contains(es[0].LastError, "550") {
			t.Errorf("recorded e-mails = %+v, %v; want one FAILED after 1 attempt naming the 550", es, err)
		}
		mb.none(t, 100*time.Millisecond)
	})
	t.Run("implicit TLS", func(t *testing.T) {
		t.Parallel()
		mb := newMailbox(t, true)
		e := newEnv(t, withMail(t, mb, "tls"))
		e.runNotices()
		crossWithAddresses(t, e, "tlsbank", "46400055", "ops@tls.test")
		mb.wait(t)
	})
	t.Run("wrong password is retried", func(t *testing.T) {
		t.Parallel()
		mb := newMailbox(t, false)
		e := newEnv(t, func(c *api.Config) {
			cfg := mb.config("starttls")
			cfg.Password = "wrong"
			m, err := api.NewSMTPMailer(cfg)
			if err != nil {
				t.Fatal(err)
			}
			c.Mailer = m
			c.WebhookBackoff, c.WebhookMaxBackoff, c.WebhookPoll = 20*time.Millisecond, 50*time.Millisecond, 20*time.Millisecond
		})
		e.runNotices()
		crossWithAddresses(t, e, "authbank", "46500066", "ops@auth.test")
		waitFor(t, "two failed attempts", func() bool {
			return e.metric("antaca_notice_emails_total", map[string]string{"result": "retry"}) >= 2
		})
		es, err := pgstore.NewNotices(e.pool).Emails(context.Background(), "authbank", 10)
		if err != nil || len(es) != 1 || es[0].State != "PENDING" || es[0].LastError == "" || strings.Contains(es[0].LastError, "wrong") {
			t.Errorf("recorded e-mails = %+v, %v; want one PENDING with the error (and no password)", es, err)
		}
	})
}

// crossWithAddresses makes a CREDIT program with notice addresses and
// takes its credit below the threshold once.
func crossWithAddresses(t *testing.T, e *env, id, bin string, addrs ...string) {
	t.Helper()
	p := e.newProgramWithThreshold(id, bin, 20_000)
	if len(addrs) > 0 {
		e.root.json("PUT", "/admin/partners/"+id+"/notice-emails", map[string]any{"addresses": addrs}, 200, nil)
	}
	e.root.json("POST", "/admin/partners/"+id+"/balances/"+p.pbal+"/reload", map[string]int{"amount": 30_000}, 200, nil)
	cid, bid := p.verifiedCustomer(t, "x")
	p.c.json("POST", "/secure/customers/"+cid+"/balances/"+bid+"/reload", map[string]int{"amount": 15_000}, 200, nil)
}

// TestSMTPConfig: the mailer's settings are checked before anything is sent.
func TestSMTPConfig(t *testing.T) {
	t.Parallel()
	ok := api.SMTPConfig{Addr: "mail.example.com:587", From: "n@example.com"}
	if _, err := api.NewSMTPMailer(ok); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	for _, tt := range []struct {
		name string
		mod  func(*api.SMTPConfig)
		want string
	}{
		{"no port", func(c *api.SMTPConfig) { c.Addr = "mail.example.com" }, "host:port"},
		{"bad port", func(c *api.SMTPConfig) { c.Addr = "mail.example.com:smtp" }, "port"},
		{"no sender", func(c *api.SMTPConfig) { c.From = "" }, "sender"},
		{"bad sender", func(c *api.SMTPConfig) { c.From = "not an address" }, "sender"},
		{"bad security", func(c *api.SMTPConfig) { c.Security = "ssl3" }, "security"},
		{"bad auth", func(c *api.SMTPConfig) { c.Auth = "kerberos"; c.Username = "u" }, "auth"},
		{"auth without user", func(c *api.SMTPConfig) { c.Auth = "login" }, "username"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.mod(&c)
			_, err := api.NewSMTPMailer(c)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one naming %q", err, tt.want)
			}
		})
	}
	var perm error = errors.New("x")
	if api.IsPermanentMail(perm) {
		t.Error("a plain error counted as permanent")
	}
}

// TestOperatorLowBalanceWebhook: the global low-balance webhook is an
// outbox endpoint: signed with its secret, retried after a failure with
// the same event id, and recorded in the delivery log; it is removed when
// the setting is.
func TestOperatorLowBalanceWebhook(t *testing.T) {
	t.Parallel()
	hook := newLowBalanceHook(t, "op-secret", 503, 500)
	e := newEnv(t, withLowBalanceWebhook(hook.url, "op-secret"))
	e.runWebhooks()
	crossWithAddresses(t, e, "opbank", "46600077")
	ev := <-hook.got
	if ev.Type != "partner_balance.low" || ev.PartnerID != "opbank" || ev.Data.Available != 15_000 || ev.Data.Threshold != 20_000 || ev.ID == "" {
		t.Fatalf("event %+v", ev)
	}
	hook.mu.Lock()
	sigs := len(hook.sigs)
	hook.mu.Unlock()
	if sigs != 3 {
		t.Errorf("the receiver saw %d attempts, want 3 (503, 500, 200)", sigs)
	}
	var n, attempts int
	var state string
	waitFor(t, "the delivery recorded", func() bool {
		err := e.pool.QueryRow(context.Background(), `SELECT count(*) OVER (), d.attempts, d.state FROM webhook_deliveries d
			JOIN webhook_endpoints ep ON ep.id = d.endpoint_id WHERE ep.partner_id = '*' AND d.event_id = $1`, ev.ID).Scan(&n, &attempts, &state)
		return err == nil && state == "DELIVERED"
	})
	if n != 1 || attempts != 3 {
		t.Errorf("delivery log: %d deliveries, %d attempts, %s; want 1, 3, DELIVERED", n, attempts, state)
	}
	waitFor(t, "the operator endpoint's deliveries counted", func() bool {
		return e.metric("antaca_webhook_deliveries_total", map[string]string{"partner": "*", "result": "delivered"}) == 1 &&
			e.metric("antaca_webhook_deliveries_total", map[string]string{"partner": "*", "result": "retry"}) == 2
	})
	// A partner's own endpoints do not list the operator's.
	var list struct {
		Data []endpointJSON `json:"data"`
	}
	e.root.json("GET", "/admin/partners/opbank/webhooks", nil, 200, &list)
	if len(list.Data) != 0 {
		t.Errorf("partner endpoints = %+v", list.Data)
	}
	// Without the setting, the endpoint is gone.
	e.restart()
	if err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM webhook_endpoints WHERE partner_id = '*'`).Scan(&n); err != nil || n != 0 {
		t.Errorf("operator endpoints after the setting was removed: %d (%v)", n, err)
	}
}

// TestOutboxRetention: the prune removes what is finished and older than
// the retention, and counts it per table.
func TestOutboxRetention(t *testing.T) {
	t.Parallel()
	hook := newLowBalanceHook(t, "")
	e := newEnv(t, withLowBalanceWebhook(hook.url, ""), func(c *api.Config) { c.OutboxRetention = time.Hour })
	e.runWebhooks()
	crossWithAddresses(t, e, "retbank", "46700088")
	ev := <-hook.got
	waitFor(t, "the delivery recorded", func() bool {
		var state string
		err := e.pool.QueryRow(context.Background(), `SELECT state FROM webhook_deliveries WHERE event_id = $1`, ev.ID).Scan(&state)
		return err == nil && state == "DELIVERED"
	})
	e.srv.PruneOutbox(context.Background()) // nothing old yet
	if got := e.metric("antaca_outbox_pruned_rows_total", map[string]string{"table": "webhook_deliveries"}); got != 0 {
		t.Fatalf("pruned %v deliveries younger than the retention", got)
	}
	if _, err := e.pool.Exec(context.Background(), `UPDATE webhook_deliveries SET created_at = now() - interval '2 hours', last_attempt_at = now() - interval '2 hours'`); err != nil {
		t.Fatal(err)
	}
	if _, err := e.pool.Exec(context.Background(), `UPDATE webhook_events SET created_at = now() - interval '2 hours'`); err != nil {
		t.Fatal(err)
	}
	e.srv.PruneOutbox(context.Background())
	if d, ev := e.metric("antaca_outbox_pruned_rows_total", map[string]string{"table": "webhook_deliveries"}),
		e.metric("antaca_outbox_pruned_rows_total", map[string]string{"table": "webhook_events"}); d != 1 || ev != 1 {
		t.Errorf("pruned %v deliveries and %v events, want 1 and 1", d, ev)
	}
	var n int
	if err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM webhook_events`).Scan(&n); err != nil || n != 0 {
		t.Errorf("%d events left (%v)", n, err)
	}
}
