package app_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/antaca/antaca/authz"
	"github.com/antaca/antaca/cmd/antaca/app"
	"github.com/antaca/antaca/ledger"
	"github.com/antaca/antaca/simulator/webhook"
)

// The administration panel in a real browser (Debian's Chromium driven
// with chromedp) against a real switch on Redis and Postgres: each role
// signs in and sees what it may do, a forbidden action posted by hand is
// refused with 403, a form without its CSRF token is refused, a customer
// is found by a card's last 4 digits, a card locked as stolen declines an
// ISO 0100 with 2009 and the decline shows in the card's transactions,
// its unlock is refused with the reason, a transaction's detail shows the
// hold's history (authorization, partial reversal, capture) and the
// listing pages with a cursor, a card is locked on a network's request and
// replaced (a plastic kept until the new one is activated, through the
// bureau's queue), a partner's webhook endpoint is created (its secret
// shown once), its delivery log shows failed attempts, it is disabled,
// enabled and redelivered to, and deleted; an Admin creates a card
// program, a Manager issues a card under it from the customer's page (a
// plastic under it is refused next to the program's select) and an 0100
// at an MCC the program blocks declines; a Manager gives the card its own
// controls (an 0100 over its maximum declines, the decline and the day's
// window on the card page) and hands it back to the program's, reads the
// program without a form to change it and replays its controls on the
// journal; a reload changes the Balance Summary, the session expires, and
// no page's HTML holds a PAN.

const chromiumPath = "/usr/bin/chromium"

const rootPassword = "root-password-123"

// sessionTTL is the admin session life on the switch where a session
// expires: long enough to sign in on a loaded machine under -race.
const sessionTTL = 6 * time.Second

// step runs one part of a long browser scenario, logging its duration.
// Not a subtest: the tabs report failures on the test that owns them.
func step(t *testing.T, name string, f func()) {
	t.Helper()
	start := time.Now()
	f()
	t.Logf("%-75s %s", name, time.Since(start).Round(10*time.Millisecond))
}

func TestPanelInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test: not in -short")
	}
	started := time.Now()
	var br *browser
	var h, h2 *harness
	step(t, "start chromium and two switches", func() {
		launched := launchBrowser(t) // in the background while the switches start
		// A lighter password hash than production's: five sign-ins of
		// 600 000 iterations cost seconds on a busy machine under -race.
		h = startApp(t, func(c *app.Config) {
			c.AdminUser, c.AdminPassword, c.AdminPasswordIterations = "root", rootPassword, 20_000
			c.WebhookAllowPrivate = true // the test's receiver listens on 127.0.0.1
		})
		// The second switch has short admin sessions, to see one expire.
		h2 = startApp(t, func(c *app.Config) {
			c.AdminUser, c.AdminPassword, c.AdminPasswordIterations = "root", rootPassword, 20_000
			c.AdminSessionTTL = sessionTTL
		})
		br = launched()
	})
	ctx := h.ctx
	p := h.newProgram(ledger.FundingDeposit, 1_000_000, 50_000)
	// A credit line under its alert threshold: the dashboard highlights it.
	must(t, h.App.Ledger.CreatePartnerBalance(ctx, p.partner, ledger.NewID("pbl"), ledger.FundingCredit, "EUR", 100_000))
	stolen := p.virtualCard(p.balance)
	other := p.virtualCard(p.balance)
	plastic := p.physicalCard(p.balance, authz.StatusActive, "")
	br.pans = []string{stolen.PAN, other.PAN, plastic.PAN}
	must(t, h.App.FlushJournal(ctx)) // search reads Postgres
	base := "http://" + h.App.HTTPAddr()

	// A session on the second switch starts now and runs out while the
	// rest goes on; the end of the test looks at it.
	var short *tab
	var shortCookie string
	step(t, "sign in on the switch with short sessions", func() {
		short = br.tab("http://" + h2.App.HTTPAddr())
		short.open("/panel/login")
		short.signIn("root", rootPassword, "Admin")
		shortCookie = short.sessionCookie()
	})

	admin := br.tab(base)
	admin.open("/panel/")
	admin.waitVisible("#sign-in")
	admin.shot("01-sign-in")
	step(t, "admin signs in", func() { admin.signIn("root", rootPassword, "Admin") })

	step(t, "admin creates a Manager and an Employee", func() {
		admin.open("/panel/users")
		for _, u := range [][2]string{{"mgr.ana", "Manager"}, {"emp.bob", "Employee"}} {
			admin.fill("#nu-username", u[0])
			admin.fill("#nu-password", u[0]+"-password-1")
			admin.fill("#nu-role", u[1])
			admin.click("#user-form button[type=submit]")
			admin.waitVisible("#user-" + strings.ReplaceAll(u[0], ".", `\.`))
		}
		admin.shot("07-admin-users")
	})

	step(t, "a reload changes the Balance Summary", func() {
		admin.open("/panel/")
		if got := admin.text(`#summaries tr[data-currency="EUR"] td.users`); got != "500.00 EUR" {
			t.Fatalf("Users before the reload = %q, want 500.00 EUR", got)
		}
		if !admin.exists("#partner-balances tr.low") {
			t.Fatal("the credit balance under its threshold is not highlighted")
		}
		admin.open("/panel/customers/" + p.customer)
		admin.fill("#amount-"+p.balance, "25.00")
		admin.click("#balance-" + p.balance + " button[type=submit]")
		admin.waitText(".notice.ok", "The balance was reloaded")
		admin.open("/panel/")
		if got := admin.text(`#summaries tr[data-currency="EUR"] td.users`); got != "525.00 EUR" {
			t.Fatalf("Users after reloading 25.00 = %q, want 525.00 EUR", got)
		}
		if got := p.user(p.balance).Available; got != 52_500 {
			t.Fatalf("balance available %d after the reload, want 52500", got)
		}
	})

	step(t, "find a customer by a card's last 4 digits", func() {
		last4 := stolen.PAN[len(stolen.PAN)-4:]
		admin.open("/panel/customers")
		admin.fill("#q", last4)
		admin.click("#search")
		admin.waitURL("q=" + last4)
		admin.waitVisible("#customers")
		admin.shot("03-customer-search")
		if got := admin.text("#customers tbody"); !strings.Contains(got, "Ada Lovelace") {
			t.Fatalf("search for %s: %q, want Ada Lovelace", last4, got)
		}
		admin.click("#customers tbody a")
		admin.waitVisible("#cards")
		admin.shot("04-customer")
		if got := admin.text("#cards"); !strings.Contains(got, stolen.PAN[:4]+" "+stolen.PAN[4:6]+"•• •••• "+last4) {
			t.Fatalf("cards table %q does not show the masked PAN", got)
		}
	})

	var emp, mgr *tab
	step(t, "employee and manager sign in", func() {
		emp = br.tab(base)
		emp.open("/panel/login")
		emp.signIn("emp.bob", "emp.bob-password-1", "Employee")
		mgr = br.tab(base)
		mgr.open("/panel/login")
		mgr.signIn("mgr.ana", "mgr.ana-password-1", "Manager")
	})

	step(t, "each role sees the actions it may use", func() {
		card := "/panel/cards/" + stolen.ID
		for _, c := range []struct {
			tab                                         *tab
			lock, remove, cvv, partners, users, replace bool
		}{
			{admin, true, true, true, true, true, true},
			{mgr, true, true, true, true, false, true},
			{emp, true, false, true, false, false, false}, // an Employee replaces physical cards only
		} {
			c.tab.open(card)
			role := c.tab.text("#signed-in-role")
			for sel, want := range map[string]bool{"#lock": c.lock, "#remove": c.remove, "#cvv": c.cvv,
				`nav a[href="/panel/partners"]`: c.partners, `nav a[href="/panel/users"]`: c.users, "#unlock": false,
				"#xlock": true, "#replace": c.replace, `nav a[href="/panel/bureau"]`: c.users} {
				if got := c.tab.exists(sel); got != want {
					t.Errorf("%s: %s shown %v, want %v", role, sel, got, want)
				}
			}
		}
		if status := emp.open("/panel/users"); status != http.StatusForbidden || !strings.Contains(emp.text("main"), "Not allowed") {
			t.Fatalf("Employee opening Admin users: %d %q", status, emp.text("main"))
		}
		if status := mgr.open("/panel/partners"); status != http.StatusOK || mgr.exists("#partner-form") {
			t.Fatalf("Manager on Partners: status %d, create form shown %v", status, mgr.exists("#partner-form"))
		}
		admin.open("/panel/partners")
		if !admin.exists("#partner-form") {
			t.Fatal("Admin does not see the create-partner form")
		}
		admin.shot("06-partners")
	})

	step(t, "a Manager registers a customer; an Employee may not", func() {
		emp.open("/panel/customers")
		if emp.exists("#register-form") {
			t.Fatal("Employee sees the registration form")
		}
		mgr.open("/panel/customers")
		mgr.fill("#reg-partnerId", p.partner)
		mgr.fill("#reg-firstName", "Grace")
		mgr.fill("#reg-lastName", "Hopper")
		mgr.fill("#reg-email", "not an e-mail")
		mgr.click("#register")
		mgr.waitVisible("#reg-email-error")
		mgr.fill("#reg-email", "grace@example.com")
		mgr.click("#register")
		mgr.waitText(".notice.ok", "The customer was registered")
		if got := mgr.text("h1"); !strings.Contains(got, "Grace Hopper") {
			t.Fatalf("registered customer's page: %q", got)
		}
	})

	step(t, "a forbidden action posted by hand is refused with 403", func() {
		emp.open("/panel/cards/" + stolen.ID)
		status, body := emp.post("/panel/cards/"+stolen.ID+"/remove", map[string]string{"confirm": "yes"}, true)
		if status != http.StatusForbidden || !strings.Contains(body, "Employee") {
			t.Fatalf("Employee removing a card by hand: %d %.200q", status, body)
		}
		if c, err := h.App.Ledger.Card(ctx, p.partner, stolen.ID); err != nil || c.Status != string(authz.StatusActive) {
			t.Fatalf("card after a refused remove: %+v %v", c, err)
		}
		// A virtual replacement is a new virtual card: not for an Employee.
		status, body = emp.post("/panel/cards/"+stolen.ID+"/replace", map[string]string{"confirm": "yes"}, true)
		if status != http.StatusForbidden || !strings.Contains(body, "Employee") {
			t.Fatalf("Employee replacing a virtual card by hand: %d %.200q", status, body)
		}
		if c, _ := h.App.Ledger.Card(ctx, p.partner, stolen.ID); c.ReplacedBy != "" || c.LockReason != 0 {
			t.Fatalf("card after a refused replacement: %+v", c)
		}
	})

	step(t, "a form without its CSRF token is refused", func() {
		status, body := emp.post("/panel/cards/"+stolen.ID+"/lock", map[string]string{"reason": "3"}, false)
		if status != http.StatusForbidden || !strings.Contains(body, "security token") {
			t.Fatalf("lock without CSRF token: %d %.200q", status, body)
		}
		status, _ = emp.post("/panel/cards/"+stolen.ID+"/lock", map[string]string{"reason": "3", "csrf": "forged"}, false)
		if c, _ := h.App.Ledger.Card(ctx, p.partner, stolen.ID); status != http.StatusForbidden || c.LockReason != 0 {
			t.Fatalf("lock with a wrong CSRF token: %d, card lock reason %d", status, c.LockReason)
		}
	})

	step(t, "locked as stolen, an 0100 declines with 2009 and shows on the card page", func() {
		emp.open("/panel/cards/" + stolen.ID)
		emp.fill("#lock-reason", "2")
		emp.click("#lock")
		emp.waitText(".notice.ok", "The card was locked")
		if got := emp.text("#card-state"); got != "LOCKED" {
			t.Fatalf("card state after locking: %q", got)
		}
		iso := h.client("cmf")
		resp := h.send(iso, txn{MTI: "0100", PAN: stolen.PAN, Amount: 1999, Expiry: stolen.Expiry})
		if got := field(t, resp.Resp, 39); got != "2009" {
			t.Fatalf("0100 on a card locked as stolen: DE39 %s, want 2009", got)
		}
		ok := h.send(iso, txn{MTI: "0100", PAN: other.PAN, Amount: 1250, Expiry: other.Expiry})
		if got := field(t, ok.Resp, 39); got != "0000" {
			t.Fatalf("0100 on the other card: DE39 %s, want 0000", got)
		}
		must(t, h.App.FlushJournal(ctx))
		mgr.open("/panel/cards/" + stolen.ID)
		row := mgr.text("#transactions-table tbody")
		if !strings.Contains(row, "CARD_LOCKED_STOLEN") || !strings.Contains(row, "2009") || !strings.Contains(row, "declined") || !strings.Contains(row, "19.99 EUR") {
			t.Fatalf("card page transactions: %q", row)
		}
		mgr.shot("05-card-locked-stolen")
		// The ISO message itself, with its RRN, is on the messages page.
		mgr.click("#messages-link")
		mgr.waitVisible("#authorizations")
		if msg := mgr.text("#authorizations tbody"); !strings.Contains(msg, resp.RRN) || !strings.Contains(msg, "0100") || !strings.Contains(msg, "2009") {
			t.Fatalf("card's ISO messages: %q", msg)
		}
	})

	step(t, "an unlock is refused with the reason shown", func() {
		mgr.open("/panel/cards/" + stolen.ID)
		if mgr.exists("#unlock") || !strings.Contains(mgr.text("#unlock-refused"), "card stolen") {
			t.Fatalf("Manager on a stolen card: unlock button %v, explanation %q", mgr.exists("#unlock"), mgr.text("#unlock-refused"))
		}
		status, body := mgr.post("/panel/cards/"+stolen.ID+"/unlock", nil, true)
		if status != http.StatusConflict || !strings.Contains(body, "locked for good") {
			t.Fatalf("unlock posted by hand: %d %.300q", status, body)
		}
		// A reversible lock is lifted from the page.
		mgr.open("/panel/cards/" + other.ID)
		mgr.fill("#lock-reason", "3")
		mgr.click("#lock")
		mgr.waitVisible("#unlock")
		mgr.click("#unlock")
		mgr.waitText(".notice.ok", "The card was unlocked")
		if got := mgr.text("#card-state"); got != "ACTIVE" {
			t.Fatalf("after unlocking reason 3: %q", got)
		}
	})

	step(t, "a transaction's history: authorization, partial reversal, capture", func() {
		iso := h.client("cmf")
		orig := h.send(iso, txn{MTI: "0100", PAN: other.PAN, Amount: 4_000, Expiry: other.Expiry})
		keep := int64(2_500)
		rev := h.send(iso, txn{MTI: "0400", PAN: other.PAN, Amount: 4_000, RRN: orig.RRN, Original: orig, Replace: &keep})
		adv := h.send(iso, txn{MTI: "0220", PAN: other.PAN, Amount: 2_500, RRN: orig.RRN, Original: orig})
		for what, m := range map[string]*sent{"0100": orig, "0400": rev, "0220": adv} {
			if got := field(t, m.Resp, 39); got != map[string]string{"0100": "0000", "0400": "4000", "0220": "9001"}[what] {
				t.Fatalf("%s: DE39 %s", what, got)
			}
		}
		p.checkMoney()
		emp.open("/panel/cards/" + other.ID)
		emp.click(`#transactions-table tbody tr:first-child a.details`)
		emp.waitVisible("#txn-history")
		if got := emp.text("#txn-status"); got != "partially captured" {
			t.Fatalf("transaction status %q", got)
		}
		hist := emp.text("#txn-history")
		for _, want := range []string{"Authorization approved", "+40.00 EUR", "Partial reversal", "−15.00 EUR", "Captured", "25.00 EUR"} {
			if !strings.Contains(hist, want) {
				t.Fatalf("history %q lacks %q", hist, want)
			}
		}
		if emp.text("#txn-reason") != "APPROVED" || emp.text("#txn-code") != "0000" || emp.text("#txn-open") != "0.00 EUR" {
			t.Fatalf("answer %q %q, still held %q", emp.text("#txn-reason"), emp.text("#txn-code"), emp.text("#txn-open"))
		}
		emp.shot("09-transaction")
	})

	step(t, "a card's transactions page with a cursor", func() {
		iso := h.client("cmf")
		for i := range txnsPerPage {
			if m := h.send(iso, txn{MTI: "0100", PAN: other.PAN, Amount: int64(100 + i), Expiry: other.Expiry}); field(t, m.Resp, 39) != "0000" {
				t.Fatalf("0100 %d declined", i)
			}
		}
		// 2 earlier transactions and 20 new ones: a full page and 2 more.
		emp.open("/panel/cards/" + other.ID)
		first := emp.rows("#transactions-table tbody tr")
		if len(first) != txnsPerPage || !strings.Contains(strings.Join(first, "\n"), "1.19 EUR") || strings.Contains(strings.Join(first, "\n"), "40.00 EUR") {
			t.Fatalf("first page: %q", first)
		}
		emp.click(`nav.pager a[rel="next"]`)
		emp.waitText("nav.pager", "Page 2")
		second := emp.rows("#transactions-table tbody tr")
		if len(second) != 2 || !strings.Contains(second[0], "40.00 EUR") || !strings.Contains(second[1], "12.50 EUR") || emp.exists(`nav.pager a[rel="next"]`) {
			t.Fatalf("second page: %q", second)
		}
		emp.click(`nav.pager a[rel="prev"]`)
		emp.waitText("nav.pager", "Page 1")
		if again := emp.rows("#transactions-table tbody tr"); strings.Join(again, "\n") != strings.Join(first, "\n") {
			t.Fatalf("back on the first page: %q", again)
		}
	})

	step(t, "locked on a network's request; a virtual card replaced", func() {
		emp.open("/panel/cards/" + other.ID)
		emp.fill("#xlock-reason", "6")
		emp.fill("#xlock-source", "NETWORK")
		emp.fill("#xlock-reference", "MC-CASE-1234")
		emp.click("#xlock")
		emp.waitText(".notice.ok", "on the request of the network")
		if got := emp.text("#lock-state"); !strings.Contains(got, "PIN tries exceeded") || !strings.Contains(got, "by network") || !strings.Contains(got, "MC-CASE-1234") {
			t.Fatalf("lock after the network's request: %q", got)
		}
		if c, _ := h.App.Ledger.Card(ctx, p.partner, other.ID); c.LockReason != 6 || c.LockSource != "NETWORK" {
			t.Fatalf("card after the external lock: reason %d source %q", c.LockReason, c.LockSource)
		}
		mgr.open("/panel/cards/" + other.ID)
		// Sent without ticking the confirmation (the page requires it).
		if status, body := mgr.post("/panel/cards/"+other.ID+"/replace", nil, true); status != http.StatusBadRequest || !strings.Contains(body, "Tick the box") {
			t.Fatalf("replacement without the confirmation: %d %.300q", status, body)
		}
		mgr.click("#replace-confirm")
		mgr.click("#replace")
		mgr.waitText(".notice.ok", "this is the new card")
		newID := mgr.text("#card-id")
		br.addCard(h, p.partner, newID)
		if newID == other.ID || mgr.text("#card-state") != "ACTIVE" {
			t.Fatalf("replacement %s state %q", newID, mgr.text("#card-state"))
		}
		mgr.shot("10-card-replaced")
		if c, _ := h.App.Ledger.Card(ctx, p.partner, other.ID); c.LockReason != 8 || c.ReplacedBy != newID {
			t.Fatalf("old card after the replacement: lock %d, replaced by %q", c.LockReason, c.ReplacedBy)
		}
		mgr.open("/panel/cards/" + other.ID)
		if mgr.exists("#replace") || mgr.text("#replaced-by") != newID || !strings.Contains(mgr.text("#unlock-refused"), "card replaced") {
			t.Fatalf("old card page: replace shown %v, replaced by %q, unlock %q", mgr.exists("#replace"), mgr.text("#replaced-by"), mgr.text("#unlock-refused"))
		}
	})

	step(t, "a plastic replaced, kept until the new one is activated", func() {
		emp.open("/panel/cards/" + plastic.ID)
		emp.click("#replace-keep")
		emp.click("#replace-confirm")
		emp.click("#replace")
		emp.waitText(".notice.ok", "keeps working until this one is activated")
		newID := emp.text("#card-id")
		br.addCard(h, p.partner, newID)
		if emp.text("#card-state") != "ORDERED" {
			t.Fatalf("new plastic: %q", emp.text("#card-state"))
		}
		if c, _ := h.App.Ledger.Card(ctx, p.partner, plastic.ID); c.LockReason != 0 {
			t.Fatalf("old plastic locked with %d before the new one is activated", c.LockReason)
		}
		// The bureau's queue: an Admin reports the plastic made.
		admin.open("/panel/bureau")
		admin.waitVisible("#order-" + newID)
		admin.shot("11-bureau")
		admin.click("#order-" + newID + " button")
		admin.waitText(".notice.ok", "reported made")
		if admin.exists("#order-" + newID) {
			t.Fatal("the plastic is still in the queue")
		}
		emp.open("/panel/cards/" + newID)
		emp.click("#activate")
		emp.waitText(".notice.ok", "The card was activated")
		if c, _ := h.App.Ledger.Card(ctx, p.partner, plastic.ID); c.LockReason != 8 {
			t.Fatalf("old plastic after the activation: lock %d, want 8", c.LockReason)
		}
		p.checkMoney()
	})

	step(t, "webhooks: create, secret once, delivery log, disable, enable, redeliver, delete", func() {
		rcv := newHookReceiver(t)
		rcv.fail.Store(true)
		// Who sees what: an Employee has no partners; a Manager reads.
		if status := emp.open("/panel/partners/" + p.partner + "/webhooks"); status != http.StatusForbidden {
			t.Fatalf("Employee on webhooks: %d", status)
		}
		admin.open("/panel/partners")
		admin.click(`a.webhooks-link[href="/panel/partners/` + p.partner + `/webhooks"]`)
		admin.waitVisible("#webhook-form")
		admin.fill("#wh-url", rcv.url)
		admin.click("#create-webhook") // no event type chosen: refused next to the list
		admin.waitVisible("#wh-events-error")
		admin.click(`input[name=events][value="card.locked"]`)
		admin.click(`input[name=events][value="card.unlocked"]`)
		admin.click("#create-webhook")
		admin.waitVisible("#secret-box")
		secret := admin.eval(`document.querySelector("#secret-value").value`)
		if !strings.HasPrefix(secret, "whsec_") {
			t.Fatalf("secret %q", secret)
		}
		admin.shot("12-webhook-created")
		admin.open("/panel/partners/" + p.partner + "/webhooks")
		if html := admin.eval(`document.documentElement.outerHTML`); strings.Contains(html, secret) {
			t.Fatal("the secret is shown again")
		}
		mgr.open("/panel/partners/" + p.partner + "/webhooks")
		if !mgr.exists("#endpoints") || mgr.exists("#webhook-form") || mgr.exists("#endpoints form") || mgr.exists("#endpoints a.button") || !mgr.exists("a.log-link") {
			t.Fatal("Manager: webhooks must be read-only")
		}

		// An event for it: the receiver fails, the log shows the attempts.
		hooked := p.virtualCard(p.balance)
		br.pans = append(br.pans, hooked.PAN)
		_, err := h.App.Issuing.Lock(ctx, p.partner, hooked.ID, authz.LockPendingQuery, "ADMIN")
		must(t, err)
		admin.click("a.log-link")
		admin.waitVisible("#endpoint-status")
		log := admin.eval(`location.pathname`)
		admin.until(log, "a failed attempt in the delivery log", func() bool {
			return strings.Contains(admin.text("#deliveries tbody"), "HTTP 500")
		})
		row := admin.text("#deliveries tbody")
		if !strings.Contains(row, "card.locked") || !strings.Contains(row, "pending") || !strings.Contains(row, "endpoint answered 500") {
			t.Fatalf("delivery log: %q", row)
		}
		admin.shot("13-delivery-log")

		// Disabled: the delivery waits, and cannot be redelivered.
		admin.open("/panel/partners/" + p.partner + "/webhooks")
		admin.click(`#endpoints form[action$="/disable"] button`)
		admin.waitText(".notice.ok", "The endpoint was disabled")
		admin.open(log)
		if admin.text("#endpoint-status") != "disabled" || admin.exists("#deliveries button") {
			t.Fatalf("disabled endpoint's log: status %q, redeliver shown %v", admin.text("#endpoint-status"), admin.exists("#deliveries button"))
		}
		rcv.fail.Store(false)
		admin.open("/panel/partners/" + p.partner + "/webhooks")
		admin.click(`#endpoints form[action$="/enable"] button`)
		admin.waitText(".notice.ok", "The endpoint was enabled")
		admin.until(log, "the waiting delivery delivered once enabled", func() bool {
			return strings.Contains(admin.text("#deliveries tbody"), "delivered")
		})
		got := rcv.wait(t, 1)
		if err := webhook.Verify(secret, got[0].sig, got[0].body, webhook.DefaultTolerance, time.Now()); err != nil {
			t.Fatalf("the delivery does not verify with the secret the panel showed: %v", err)
		}
		// The secret rotated (after a confirmation), then redelivered by
		// hand: the same event again, signed with the new secret.
		admin.open("/panel/partners/" + p.partner + "/webhooks")
		admin.click(`#endpoints a[href$="/rotate-secret"]`)
		admin.click("#confirm-action")
		admin.waitVisible("#secret-box")
		rotated := admin.eval(`document.querySelector("#secret-value").value`)
		if !strings.HasPrefix(rotated, "whsec_") || rotated == secret {
			t.Fatalf("rotated secret %q", rotated)
		}
		admin.open(log)
		admin.click("#deliveries button")
		admin.waitText(".notice.ok", "queued again")
		again := rcv.wait(t, len(got)+1)
		last := again[len(again)-1]
		if string(last.body) != string(got[0].body) {
			t.Fatal("the redelivery is not the same event")
		}
		if err := webhook.Verify(rotated, last.sig, last.body, webhook.DefaultTolerance, time.Now()); err != nil {
			t.Fatalf("the redelivery does not verify with the rotated secret: %v", err)
		}

		// Deleted after a confirmation.
		admin.open("/panel/partners/" + p.partner + "/webhooks")
		admin.click(`#endpoints a.danger`)
		admin.click("#confirm-action")
		admin.waitText(".notice.ok", "deleted")
		if admin.exists("#endpoints") {
			t.Fatal("the endpoint is still listed")
		}
	})

	var gold testCard
	const goldID = "gold"
	step(t, "Admin creates a card program with a blocked MCC", func() {
		admin.open("/panel/partners")
		admin.click(`a.programs-link[href="/panel/partners/` + p.partner + `/programs"]`)
		admin.waitVisible("#program-new-form")
		if !admin.exists("#program-prg_" + p.partner) {
			t.Fatal("the partner's default program is not listed")
		}
		admin.fill("#np-id", goldID)
		admin.fill("#np-name", "Gold debit")
		admin.fill("#np-binRanges", "49990000-49990099")
		admin.click("#np-type-VIRTUAL")
		admin.fill("#npc-per_transaction_max", "500")
		admin.fill("#npc-mcc_block", "5411, 79x5")
		admin.click("#create-program") // refused by the API, next to the field it names
		admin.waitVisible("#npc-mcc_block-error")
		if got := admin.text("#npc-mcc_block-error"); !strings.Contains(got, `MCC "79X5" is not four digits`) || admin.exists("#program-new-error") {
			t.Fatalf("error next to the MCC field: %q; at the form's top too: %v", got, admin.exists("#program-new-error"))
		}
		admin.shot("22-program-refused-by-field")
		admin.fill("#npc-mcc_block", "5411, 7995")
		admin.click("#create-program")
		admin.waitText(".notice.ok", "The program was created")
		if got := admin.text("#program-controls"); !strings.Contains(got, "MCC 5411, 7995") || !strings.Contains(got, "at most 500.00 EUR") {
			t.Fatalf("the new program's controls: %q", got)
		}
		if admin.exists("#secret-box") {
			t.Fatal("a secret shown for a program without a decision URL")
		}
		admin.shot("15-program")
		admin.open("/panel/partners/" + p.partner + "/programs")
		if got := admin.text("#program-" + goldID); !strings.Contains(got, "49990000–49990099") || !strings.Contains(got, "MCC 5411, 7995") {
			t.Fatalf("programs list: %q", got)
		}
		admin.shot("14-programs")
	})

	step(t, "a Manager issues a card under the program from the customer's page", func() {
		cards := func() int {
			cs, err := h.App.Ledger.CardsOfBalance(ctx, p.partner, p.balance)
			must(t, err)
			return len(cs)
		}
		before := cards()
		mgr.open("/panel/customers/" + p.customer)
		if got := mgr.text(`#virt-program option[value=""]`); !strings.HasPrefix(got, "The partner's default program (") {
			t.Fatalf("the default program's option: %q", got)
		}
		if got := mgr.text(`#virt-program option[value="` + goldID + `"]`); got != "Gold debit (gold) · EUR · virtual cards only" {
			t.Fatalf("the program's option: %q", got)
		}
		// The program issues virtual cards only: a plastic under it is
		// refused, next to the select.
		mgr.fill("#phys-balance", p.balance)
		mgr.fill("#phys-program", goldID)
		for sel, v := range map[string]string{"#addr-line1": "1 Main St", "#addr-city": "Warsaw", "#addr-postalCode": "00-001", "#addr-country": "PL"} {
			mgr.fill(sel, v)
		}
		mgr.click("#physical-form button[type=submit]")
		mgr.waitVisible("#phys-program-error")
		if got := mgr.text("#phys-program-error"); !strings.Contains(got, "Gold debit (gold) does not issue physical cards; it issues virtual cards only") {
			t.Fatalf("refusal next to the program: %q", got)
		}
		if mgr.exists("#physical-error") || cards() != before {
			t.Fatalf("refusal at the form's top %v, or a card made (%d cards, %d before)", mgr.exists("#physical-error"), cards(), before)
		}
		mgr.shot("20-customer-program-refused")
		mgr.fill("#virt-balance", p.balance)
		mgr.fill("#virt-program", goldID)
		mgr.click("#issue-virtual")
		mgr.waitText(".notice.ok", "The virtual card was issued")
		if got := mgr.text("#card-program"); got != goldID {
			t.Fatalf("the new card's program on its page: %q, want %s", got, goldID)
		}
		id := mgr.text("#card-id")
		br.addCard(h, p.partner, id)
		mgr.checkHTML()
		full, err := h.App.Issuing.FullData(ctx, p.partner, id)
		must(t, err)
		gold = testCard{ID: id, PAN: full.CardNo, Expiry: full.Exp[2:4] + full.Exp[5:7], Balance: p.balance}
		mgr.shot("21-card-of-program")
		// A card issued without a choice belongs to the default program.
		mgr.open("/panel/cards/" + other.ID)
		if got := mgr.text("#card-program"); got != "prg_"+p.partner+" (the partner's default program)" {
			t.Fatalf("a card of the default program: %q", got)
		}
	})

	step(t, "a card of the program declines an MCC the program blocks", func() {
		if !strings.HasPrefix(gold.PAN, "499900") {
			t.Fatalf("a card of the program has a PAN outside its range: %s…", gold.PAN[:6])
		}
		// The test's ISO messages carry MCC 5411.
		resp := h.send(h.client("cmf"), txn{MTI: "0100", PAN: gold.PAN, Amount: 1999, Expiry: gold.Expiry})
		if got := field(t, resp.Resp, 39); got != "1019" {
			t.Fatalf("0100 at an MCC the program blocks: DE39 %s, want 1019", got)
		}
	})

	step(t, "a Manager gives the card its own controls; over its maximum an 0100 declines", func() {
		card := "/panel/cards/" + gold.ID
		emp.open(card)
		if emp.eval(`document.querySelector("#controls-source").dataset.source`) != "program" || emp.exists("#card-controls-form") {
			t.Fatalf("Employee's view of the card's controls: %q, form shown %v", emp.text("#controls"), emp.exists("#card-controls-form"))
		}
		if status, body := emp.post(card+"/controls", map[string]string{"per_transaction_max": "1"}, true); status != http.StatusForbidden || !strings.Contains(body, "Employee") {
			t.Fatalf("Employee setting controls by hand: %d %.200q", status, body)
		}
		mgr.open(card)
		if got := mgr.text("#controls"); !strings.Contains(got, "MCC 5411, 7995") || !strings.Contains(got, goldID) {
			t.Fatalf("the card's controls from its program: %q", got)
		}
		mgr.click("#controls-edit summary")
		mgr.shot("18-card-controls-form")
		mgr.clear("#cc-mcc_block")
		mgr.fill("#cc-per_transaction_max", "10")
		mgr.fill("#cc-day_amount", "50")
		mgr.fill("#cc-day_count", "3")
		mgr.click("#save-card-controls")
		mgr.waitText(".notice.ok", "own spend controls were saved")
		if src := mgr.eval(`document.querySelector("#controls-source").dataset.source`); src != "card" {
			t.Fatalf("controls source after saving: %q", src)
		}
		iso := h.client("cmf")
		if m := h.send(iso, txn{MTI: "0100", PAN: gold.PAN, Amount: 500, Expiry: gold.Expiry}); field(t, m.Resp, 39) != "0000" {
			t.Fatalf("0100 of 5.00 under the card's controls: DE39 %s", field(t, m.Resp, 39))
		}
		if m := h.send(iso, txn{MTI: "0100", PAN: gold.PAN, Amount: 1999, Expiry: gold.Expiry}); field(t, m.Resp, 39) != "1021" {
			t.Fatalf("0100 of 19.99 over the card's maximum of 10.00: DE39 %s, want 1021", field(t, m.Resp, 39))
		}
		must(t, h.App.FlushJournal(ctx))
		mgr.open(card)
		rows := strings.Join(mgr.rows("#transactions-table tbody tr"), "\n")
		for _, want := range []string{"CONTROL_TRANSACTION_MAX", "1021", "CONTROL_MCC_BLOCKED", "1019", "19.99 EUR", "5.00 EUR"} {
			if !strings.Contains(rows, want) {
				t.Fatalf("card's transactions lack %q: %q", want, rows)
			}
		}
		if got := mgr.text("#controls-usage tbody"); !strings.Contains(got, "5.00 EUR") || !strings.Contains(got, "45.00 EUR and 2 authorizations") {
			t.Fatalf("the day's window: %q", got)
		}
		mgr.shot("16-card-controls")
		// Back to the program's controls, after a confirmation.
		mgr.click("#controls-reset")
		mgr.waitVisible("#confirm-controls-reset")
		mgr.shot("19-card-controls-reset")
		mgr.click("#confirm-controls-reset")
		mgr.waitText(".notice.ok", "its program's controls apply again")
		if src := mgr.eval(`document.querySelector("#controls-source").dataset.source`); src != "program" {
			t.Fatalf("controls source after going back to the program's: %q", src)
		}
	})

	step(t, "a Manager reads the program with no form to change it, and replays its controls", func() {
		must(t, h.App.FlushJournal(ctx)) // the replay reads the journal in Postgres
		prog := "/panel/partners/" + p.partner + "/programs/" + goldID
		mgr.open(prog)
		if !strings.Contains(mgr.text("#program-controls"), "MCC 5411, 7995") || mgr.exists("#program-form") || mgr.exists("#controls-form") || !mgr.exists("#controls-read-only") {
			t.Fatal("Manager: the program and its controls must be read-only")
		}
		if status, _ := mgr.post(prog+"/controls", map[string]string{"per_transaction_max": "1"}, true); status != http.StatusForbidden {
			t.Fatalf("Manager setting the program's controls by hand: %d", status)
		}
		// The program's controls over its traffic: the 5.00 approved under
		// the card's own controls (MCC 5411) would have been declined.
		mgr.click("#run-replay")
		mgr.waitVisible("#replay-result")
		if got := mgr.text("#replay-declined"); got != "1" {
			t.Fatalf("replay: newly declined %q, want 1 (%q)", got, mgr.text("#replay-result"))
		}
		if got := mgr.text("#replay-reasons"); !strings.Contains(got, "CONTROL_MCC_BLOCKED") || !strings.Contains(got, "5.00 EUR") {
			t.Fatalf("replay reasons: %q", got)
		}
		mgr.shot("17-program-replay")
	})

	step(t, "dashboard shows the last hour's authorizations", func() {
		admin.open("/panel/")
		chart := admin.text("#by-reason")
		if !strings.Contains(chart, "APPROVED") || !strings.Contains(chart, "CARD_LOCKED_STOLEN") || !admin.exists("svg.chart rect.bar-bad") {
			t.Fatalf("authorizations by reason: %q", chart)
		}
		if !strings.Contains(admin.text("#ready"), "Ready") {
			t.Fatalf("readiness: %q", admin.text("#ready"))
		}
		admin.shot("02-dashboard")
		admin.click(`form[action="/panel/logout"] button`)
		admin.waitVisible("#signed-out")
		if got := admin.text("#message"); !strings.Contains(got, "You signed out") {
			t.Fatalf("after signing out: %q", got)
		}
	})

	step(t, "the session expires", func() {
		// The page sends itself to the signed-out page when the time is up.
		short.waitVisibleWithin("#signed-out", sessionTTL+15*time.Second)
		if got := short.text("#message"); !strings.Contains(got, "session expired") {
			t.Fatalf("signed-out page: %q", got)
		}
		short.shot("08-session-expired")
		// The server refuses the old session whatever the page does.
		req, _ := http.NewRequest("GET", short.base+"/panel/", nil)
		req.AddCookie(&http.Cookie{Name: "antaca_panel", Value: shortCookie})
		resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
		must(t, err)
		resp.Body.Close()
		if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || !strings.Contains(loc, "why=expired") {
			t.Fatalf("expired session: %d Location %q", resp.StatusCode, loc)
		}
	})

	step(t, "no page holds a PAN; the switch logged none", func() {
		if br.pagesSeen < 40 {
			t.Fatalf("only %d pages checked", br.pagesSeen)
		}
		for _, pan := range br.pans {
			if strings.Contains(h.logs.String(), pan) {
				t.Fatal("a PAN is in the switch's log")
			}
		}
	})
	t.Logf("browser tests took %s; screenshots in %s", time.Since(started).Round(100*time.Millisecond), br.shots)
}

// txnsPerPage is how many transactions a card's page lists.
const txnsPerPage = 20

// addCard adds a card the panel created (a replacement) to the PANs no
// page may show, and checks the page on screen again.
func (b *browser) addCard(h *harness, partnerID, cardID string) {
	b.t.Helper()
	full, err := h.App.Issuing.FullData(h.ctx, partnerID, cardID)
	must(b.t, err)
	b.pans = append(b.pans, full.CardNo)
}

// hookReceiver is a partner's webhook endpoint in the test: it answers
// 500 while fail is set, and keeps what it accepted.
type hookReceiver struct {
	url  string
	fail atomic.Bool
	mu   sync.Mutex
	got  []hookDelivery
}

type hookDelivery struct {
	sig  string
	body []byte
}

func newHookReceiver(t *testing.T) *hookReceiver {
	r := &hookReceiver{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		if r.fail.Load() {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		r.mu.Lock()
		r.got = append(r.got, hookDelivery{sig: req.Header.Get(webhook.Header), body: body})
		r.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	r.url = srv.URL + "/antaca-events"
	return r
}

// wait waits until n deliveries were accepted and returns them.
func (r *hookReceiver) wait(t *testing.T, n int) []hookDelivery {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r.mu.Lock()
		got := append([]hookDelivery(nil), r.got...)
		r.mu.Unlock()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("the webhook receiver got %d deliveries, want %d", len(got), n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// browser is one headless Chromium for the test; each tab has its own
// browser context (cookies), so each role signs in on its own.
type browser struct {
	t         *testing.T
	ctx       context.Context
	shots     string
	pans      []string // every page's HTML is checked against these
	pagesSeen int
}

// launchBrowser starts Chromium in the background; the func it returns
// waits for it (and fails the test when it did not start).
func launchBrowser(t *testing.T) func() *browser {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("the panel's browser tests need Chromium at %s: install Debian's package with `apt-get install -y chromium` (.ci/services.sh does): %v", chromiumPath, err)
	}
	dir := os.Getenv("ANTACA_TEST_OUTPUT")
	if dir == "" {
		dir = os.TempDir()
	}
	shots := filepath.Join(dir, "antaca-panel-screens")
	must(t, os.MkdirAll(shots, 0o755))
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromiumPath),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(ctx, chromedp.Navigate("about:blank")) }()
	return func() *browser {
		t.Helper()
		if err := <-started; err != nil {
			t.Fatalf("starting chromium: %v", err)
		}
		return &browser{t: t, ctx: ctx, shots: shots}
	}
}

type tab struct {
	b    *browser
	ctx  context.Context
	base string
}

// tab opens a tab in a fresh browser context.
func (b *browser) tab(base string) *tab {
	ctx, cancel := chromedp.NewContext(b.ctx, chromedp.WithNewBrowserContext())
	b.t.Cleanup(cancel)
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		b.t.Fatalf("opening a tab: %v", err)
	}
	return &tab{b: b, ctx: ctx, base: base}
}

func (tb *tab) run(what string, steps ...chromedp.Action[chromedp.Void]) {
	tb.b.t.Helper()
	tb.within(what, 15*time.Second, steps...)
}

func (tb *tab) within(what string, d time.Duration, steps ...chromedp.Action[chromedp.Void]) {
	tb.b.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, d)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		tb.shot("failed")
		tb.b.t.Fatalf("%s: %v (page %s: %.600q)", what, err, tb.eval(`location.href`), tb.text("main"))
	}
}

// open loads a page, checks its HTML and returns its status.
func (tb *tab) open(path string) int {
	tb.b.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 15*time.Second)
	defer cancel()
	resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(tb.base+path))
	if err != nil {
		tb.b.t.Fatalf("opening %s: %v", path, err)
	}
	tb.waitVisible("body") // and checks the HTML
	return int(resp.Status)
}

func (tb *tab) waitVisible(sel string) {
	tb.b.t.Helper()
	tb.waitVisibleWithin(sel, 15*time.Second)
}

func (tb *tab) waitVisibleWithin(sel string, d time.Duration) {
	tb.b.t.Helper()
	tb.within("waiting for "+sel, d, chromedp.WaitVisible(chromedp.CSS(sel)))
	tb.checkHTML()
}

// waitText waits until the element holds the text (a page loaded after a
// form). It asks again and again rather than with one Poll, which would
// die with the page it started on.
func (tb *tab) waitText(sel, text string) {
	tb.b.t.Helper()
	tb.waitJS(fmt.Sprintf("%q in %s", text, sel), fmt.Sprintf(`(document.querySelector(%q) || {innerText: ""}).innerText.includes(%q)`, sel, text))
}

// waitURL waits until the page loaded is at an address that holds part:
// a form that answers with a page like the one it was sent from (a
// search) leaves the old page's elements visible until the new one comes.
func (tb *tab) waitURL(part string) {
	tb.b.t.Helper()
	tb.waitJS("an address with "+part, fmt.Sprintf(`location.href.includes(%q) && document.readyState === "complete"`, part))
}

// waitJS asks the page whether js holds again and again until it does.
func (tb *tab) waitJS(what, js string) {
	tb.b.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(tb.ctx, 5*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](js))
		cancel()
		if err == nil && ok {
			break
		}
		if time.Now().After(deadline) {
			tb.b.t.Fatalf("waiting for %s: %v (page: %.600q)", what, err, tb.text("main"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	tb.checkHTML()
}

// checkHTML requires that the page's HTML holds no PAN.
func (tb *tab) checkHTML() {
	tb.b.t.Helper()
	html := tb.eval(`document.documentElement.outerHTML`)
	for _, pan := range tb.b.pans {
		if strings.Contains(html, pan) {
			tb.b.t.Fatalf("a full PAN is in the HTML of %s", tb.eval(`location.pathname`))
		}
	}
	tb.b.pagesSeen++
}

func (tb *tab) eval(js string) string {
	tb.b.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 15*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[string](js))
	if err != nil {
		tb.b.t.Fatalf("evaluating %s: %v", js, err)
	}
	return v
}

func (tb *tab) text(sel string) string {
	tb.b.t.Helper()
	return strings.TrimSpace(tb.eval(fmt.Sprintf(`(document.querySelector(%q) || {innerText: ""}).innerText`, sel)))
}

// rows is the text of every element the selector matches.
func (tb *tab) rows(sel string) []string {
	tb.b.t.Helper()
	out := tb.eval(fmt.Sprintf(`Array.from(document.querySelectorAll(%q)).map(e => e.innerText.replaceAll("\n", " ")).join("\n")`, sel))
	if out == "" {
		return nil
	}
	return strings.Split(out, "\n")
}

// until opens the page again and again until cond holds (what the
// switch does in the background: webhook deliveries).
func (tb *tab) until(path, what string, cond func() bool) {
	tb.b.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		tb.open(path)
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			tb.shot("failed")
			tb.b.t.Fatalf("waiting for %s on %s (page: %.600q)", what, path, tb.text("main"))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (tb *tab) exists(sel string) bool {
	tb.b.t.Helper()
	return tb.eval(fmt.Sprintf(`String(document.querySelector(%q) !== null)`, sel)) == "true"
}

func (tb *tab) fill(sel, value string) {
	tb.b.t.Helper()
	tb.run("filling "+sel, chromedp.SetValue(chromedp.CSS(sel), value))
}

// clear empties a field (chromedp's SetValue cannot set "").
func (tb *tab) clear(sel string) {
	tb.b.t.Helper()
	tb.eval(fmt.Sprintf(`(document.querySelector(%q).value = "")`, sel))
}

func (tb *tab) click(sel string) {
	tb.b.t.Helper()
	tb.run("clicking "+sel, chromedp.Click(chromedp.CSS(sel)))
}

func (tb *tab) signIn(user, password, role string) {
	tb.b.t.Helper()
	tb.fill("#username", user)
	tb.fill("#password", password)
	tb.click("#sign-in")
	tb.within("signing in as "+user, 30*time.Second, chromedp.WaitVisible(chromedp.CSS("#signed-in-role")))
	tb.checkHTML()
	if got := tb.text("#signed-in-role"); got != role || tb.text("#signed-in-user") != user {
		tb.b.t.Fatalf("signed in as %s: header shows %q %q", user, tb.text("#signed-in-user"), got)
	}
}

// post sends a form from the page with fetch, as a hand-made request
// would (with the page's CSRF token when withCSRF), and returns the answer.
func (tb *tab) post(path string, form map[string]string, withCSRF bool) (int, string) {
	tb.b.t.Helper()
	fields := "{"
	for k, v := range form {
		fields += fmt.Sprintf("%q: %q,", k, v)
	}
	fields += "}"
	js := fmt.Sprintf(`(async () => {
		const f = new URLSearchParams(%s);
		const tok = document.querySelector('input[name=csrf]');
		if (%v && tok) f.set('csrf', tok.value);
		const r = await fetch(%q, {method: 'POST', body: f, redirect: 'manual'});
		return r.status + "\n" + await r.text();
	})()`, fields, withCSRF, path)
	ctx, cancel := context.WithTimeout(tb.ctx, 15*time.Second)
	defer cancel()
	out, err := chromedp.Run(ctx, chromedp.Evaluate[string](js, chromedp.EvalAwaitPromise))
	if err != nil {
		tb.b.t.Fatalf("posting %s: %v", path, err)
	}
	status, body, _ := strings.Cut(out, "\n")
	for _, pan := range tb.b.pans {
		if strings.Contains(body, pan) {
			tb.b.t.Fatalf("a full PAN is in the answer of %s", path)
		}
	}
	n := 0
	fmt.Sscan(status, &n)
	return n, body
}

// sessionCookie reads the panel's HttpOnly session cookie through the
// browser's protocol.
func (tb *tab) sessionCookie() string {
	tb.b.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 15*time.Second)
	defer cancel()
	cookies, err := chromedp.Run(ctx, func(ctx context.Context, t *chromedp.Target) ([]*network.Cookie, error) {
		res, err := cdp.Call(ctx, t, network.GetCookies, network.GetCookiesParams{URLs: []string{tb.base + "/panel/"}})
		return res.Cookies, err
	})
	if err != nil {
		tb.b.t.Fatalf("reading cookies: %v", err)
	}
	for _, c := range cookies {
		if c.Name == "antaca_panel" {
			if !c.HTTPOnly || c.SameSite != network.CookieSameSiteStrict {
				tb.b.t.Fatalf("session cookie: HttpOnly %v, SameSite %v", c.HTTPOnly, c.SameSite)
			}
			return c.Value
		}
	}
	tb.b.t.Fatal("no session cookie")
	return ""
}

// shot saves a screenshot of the whole page. The tab is brought to the
// front first: Chromium renders only the active tab of a window, and a
// capture on a tab that renders no frame waits for one (the test keeps
// several tabs open, and a later one had become the active tab).
func (tb *tab) shot(name string) {
	tb.b.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 15*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, func(ctx context.Context, t *chromedp.Target) ([]byte, error) {
		if _, err := cdp.Call(ctx, t, page.BringToFront, cdp.Empty{}); err != nil {
			return nil, fmt.Errorf("bring the tab to the front: %w", err)
		}
		return chromedp.FullScreenshot(100)(ctx, t)
	})
	if err != nil {
		tb.b.t.Fatalf("screenshot %s: %v", name, err)
	}
	must(tb.b.t, os.WriteFile(filepath.Join(tb.b.shots, name+".png"), png, 0o644))
}
