package panel

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// The browser tests against a whole switch are in cmd/antaca/app
// (panel_test.go); these check the panel's own plumbing with a fake API.

func TestMoneyInAndOut(t *testing.T) {
	for _, c := range []struct {
		in, cur string
		want    int64
		bad     bool
	}{
		{"12.50", "EUR", 1250, false}, {"7", "EUR", 700, false}, {"1,000.5", "EUR", 100050, false},
		{".5", "EUR", 50, false}, {"500", "JPY", 500, false}, {"1.5", "JPY", 0, true},
		{"1.234", "EUR", 0, true}, {"-3", "EUR", 0, true}, {"0", "EUR", 0, true}, {"", "EUR", 0, true},
		{"1e3", "EUR", 0, true}, {"12.", "EUR", 0, true}, {"99999999999999", "EUR", 0, true},
	} {
		got, err := parseMoney(c.in, c.cur)
		if (err != nil) != c.bad || got != c.want {
			t.Errorf("parseMoney(%q, %s) = %d, %v; want %d, bad %v", c.in, c.cur, got, err, c.want, c.bad)
		}
	}
	for in, want := range map[[2]any]string{
		{int64(123456789), "EUR"}: "1,234,567.89 EUR", {int64(5), "EUR"}: "0.05 EUR",
		{int64(-1250), "EUR"}: "−12.50 EUR", {int64(1500), "JPY"}: "1,500 JPY",
	} {
		if got := formatMoney(in[0].(int64), in[1].(string)); got != want {
			t.Errorf("formatMoney(%v) = %q, want %q", in, got, want)
		}
	}
}

// fakeAPI answers the panel's /admin calls and records them.
type fakeAPI struct {
	mu      sync.Mutex
	calls   []string
	expired bool
	role    string // the signed-in admin's role; Employee when empty
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.calls = append(f.calls, r.Method+" "+r.URL.Path+" "+r.Header.Get("Authorization")+" "+string(body))
	expired, role := f.expired, f.role
	f.mu.Unlock()
	if role == "" {
		role = "Employee"
	}
	w.Header().Set("Content-Type", "application/json")
	if expired {
		w.WriteHeader(401)
		_, _ = w.Write([]byte(`{"code":"SESSION_EXPIRED","message":"the session has expired"}`))
		return
	}
	switch r.URL.Path {
	case "/admin/session":
		_ = json.NewEncoder(w).Encode(map[string]any{"username": "desk", "role": role, "expiresAt": time.Now().Add(time.Hour)})
	case "/admin/bureau/orders":
		_, _ = w.Write([]byte(`{"orders":[{"id":"crd_9","type":"PHYSICAL","status":"ORDERED","last4":"4242","expiry":"2030-01",` +
			`"partnerId":"acme","blank":false,"deliveryAddress":{"line1":"1 Main St","city":"Warsaw","postalCode":"00-001","country":"PL"},` +
			`"orderedAt":"2030-01-01T10:00:00Z"}]}`))
	case "/admin/cards/crd_1/unlock":
		w.WriteHeader(403)
		_, _ = w.Write([]byte(`{"code":"FORBIDDEN","message":"your role does not allow this operation"}`))
	default:
		_, _ = w.Write([]byte(`{}`))
	}
}

func (f *fakeAPI) called(prefix string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.calls {
		if strings.HasPrefix(c, prefix) {
			return c
		}
	}
	return ""
}

func TestHeadersCSRFAndDispatch(t *testing.T) {
	api := &fakeAPI{}
	p, err := New(Config{API: api})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p)
	defer srv.Close()
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	resp, err := noFollow.Get(srv.URL + "/panel/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	h := resp.Header
	if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") ||
		!strings.Contains(csp, "frame-ancestors 'none'") || h.Get("X-Frame-Options") != "DENY" ||
		h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Referrer-Policy") == "" || h.Get("Cache-Control") != "no-store" {
		t.Fatalf("security headers: %v", h)
	}

	resp, _ = noFollow.Get(srv.URL + "/panel/")
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/panel/login" {
		t.Fatalf("no session: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}

	post := func(path string, form url.Values) *http.Response {
		req, _ := http.NewRequest("POST", srv.URL+path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.AddCookie(&http.Cookie{Name: sessionCookie, Value: "tok-1"})
		resp, err := noFollow.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if r := post("/panel/cards/crd_1/lock", url.Values{"reason": {"2"}}); r.StatusCode != http.StatusForbidden || api.called("POST /admin/cards") != "" {
		t.Fatalf("without CSRF token: %d, API called: %q", r.StatusCode, api.called("POST /admin/cards"))
	}
	if r := post("/panel/cards/crd_1/lock", url.Values{"reason": {"2"}, "csrf": {csrfToken("another-session")}}); r.StatusCode != http.StatusForbidden {
		t.Fatalf("another session's CSRF token: %d", r.StatusCode)
	}
	r := post("/panel/cards/crd_1/lock", url.Values{"reason": {"2"}, "csrf": {csrfToken("tok-1")}})
	if r.StatusCode != http.StatusSeeOther || !strings.HasSuffix(r.Header.Get("Location"), "/panel/cards/crd_1?done=lock") {
		t.Fatalf("lock: %d %s", r.StatusCode, r.Header.Get("Location"))
	}
	if got := api.called("POST /admin/cards/crd_1/lock"); got != `POST /admin/cards/crd_1/lock Bearer tok-1 {"reason":2}` {
		t.Fatalf("the panel sent %q to the API", got)
	}
	// The API's refusal is the panel's: 403 for a role that may not.
	if r := post("/panel/cards/crd_1/unlock", url.Values{"csrf": {csrfToken("tok-1")}}); r.StatusCode != http.StatusForbidden {
		t.Fatalf("unlock refused by the API: %d", r.StatusCode)
	}

	api.mu.Lock()
	api.expired = true
	api.mu.Unlock()
	req, _ := http.NewRequest("GET", srv.URL+"/panel/customers", nil)
	req.AddCookie(&http.Cookie{Name: sessionCookie, Value: "tok-1"})
	resp, err = noFollow.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/panel/signed-out?why=expired" {
		t.Fatalf("expired session: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	if c := resp.Cookies(); len(c) != 1 || c[0].Name != sessionCookie || c[0].MaxAge >= 0 || !c[0].HttpOnly || c[0].SameSite != http.SameSiteStrictMode {
		t.Fatalf("session cookie not cleared as it should be: %+v", c)
	}
}

// The bureau's machine account lands on the bureau's queue and sees only
// that: the dashboard's reads are not for its role.
func TestBureauAccount(t *testing.T) {
	api := &fakeAPI{role: "Bureau"}
	p, err := New(Config{API: api})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p)
	defer srv.Close()
	get := func(path string) (*http.Response, string) {
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		req.AddCookie(&http.Cookie{Name: sessionCookie, Value: "tok-b"})
		resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	if resp, _ := get("/panel/"); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/panel/bureau" {
		t.Fatalf("the bureau on the dashboard: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	if api.called("GET /admin/authorizations/stats") != "" || api.called("GET /admin/summaries") != "" {
		t.Fatal("the dashboard read what the Bureau role may not")
	}
	resp, body := get("/panel/bureau")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `id="order-crd_9"`) || !strings.Contains(body, "Warsaw") ||
		!strings.Contains(body, `action="/panel/bureau/crd_9/personalised"`) {
		t.Fatalf("bureau page: %d %s", resp.StatusCode, body)
	}
	for _, hidden := range []string{`href="/panel/customers"`, `href="/panel/partners"`, `href="/panel/users"`, `href="/panel/cards/crd_9"`} {
		if strings.Contains(body, hidden) {
			t.Errorf("the bureau's page links to %s", hidden)
		}
	}
}

// Cursor pages: the links carry the cursors of the pages seen, so
// "Previous" goes back exactly; without them the way back is "Newest".
func TestCursorLinks(t *testing.T) {
	at := func(link string) cursor {
		t.Helper()
		r := httptest.NewRequest("GET", link, nil)
		return readCursor(r)
	}
	c := at("/panel/cards/crd_1")
	page, prev, next, first := c.links("/panel/cards/crd_1", "#t", "txn_A", true)
	if page != 1 || prev != "" || first != "" || next != "/panel/cards/crd_1?after=txn_A&back=-#t" {
		t.Fatalf("first page: %d %q %q %q", page, prev, next, first)
	}
	c = at(strings.TrimSuffix(next, "#t"))
	page, prev, next, _ = c.links("/panel/cards/crd_1", "#t", "txn_B", true)
	if page != 2 || prev != "/panel/cards/crd_1#t" || next != "/panel/cards/crd_1?after=txn_B&back=-%2Ctxn_A#t" {
		t.Fatalf("second page: %d %q %q", page, prev, next)
	}
	c = at(strings.TrimSuffix(next, "#t"))
	page, prev, next, _ = c.links("/panel/cards/crd_1", "#t", "txn_C", false)
	if page != 3 || prev != "/panel/cards/crd_1?after=txn_A&back=-#t" || next != "" {
		t.Fatalf("third page: %d %q %q", page, prev, next)
	}
	// A link without its trail, or with something else in it.
	for _, link := range []string{"/x?after=txn_B", "/x?after=txn_B&back=a%3Cb", "/x?after=txn_B&back=-%2C%2C"} {
		c = at(link)
		page, prev, _, first = c.links("/x", "", "txn_C", true)
		if c.after != "txn_B" || page != 0 || prev != "" || first != "/x" {
			t.Errorf("%s: page %d prev %q first %q", link, page, prev, first)
		}
	}
	if c = at("/x?after=%3Cscript%3E"); c.after != "" {
		t.Fatalf("a cursor that is no id: %+v", c)
	}
}

// A hold's history: what was held after each event, in words.
func TestTransactionHistory(t *testing.T) {
	at := time.Date(2030, 1, 1, 10, 0, 0, 0, time.UTC)
	tx := transaction{Type: "authorization", Status: "partially_captured", Currency: "EUR", ApprovedAmount: 4_000, CapturedAmount: 2_000, ReleasedAmount: 2_000,
		Events: []txnEvent{{"authorized", 4_000, at}, {"reversed", 1_500, at}, {"captured", 2_000, at}}}
	h := tx.history()
	var got []string
	for _, e := range h {
		got = append(got, fmt.Sprintf("%s %s%d held %d", e.Title, e.Sign, e.Amount, e.Held))
	}
	want := []string{"Authorization approved +4000 held 4000", "Partial reversal −1500 held 2500", "Captured in part 2000 held 0"}
	if strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Fatalf("history:\n got %q\nwant %q", got, want)
	}
	if !strings.Contains(h[2].Explain, "5.00 EUR") || tx.Open() != 0 {
		t.Fatalf("capture explained %q, open %d", h[2].Explain, tx.Open())
	}
	exp := transaction{Type: "authorization", Status: "expired", Currency: "EUR", ApprovedAmount: 900, ReleasedAmount: 900,
		Events: []txnEvent{{"authorized", 900, at}, {"expired", 900, at}}}
	if h := exp.history(); h[1].Title != "Expired" || h[1].Held != 0 {
		t.Fatalf("expiry: %+v", h[1])
	}
	open := transaction{Type: "authorization", Status: "partially_reversed", ApprovedAmount: 1_000, ReleasedAmount: 400}
	if open.Open() != 600 {
		t.Fatalf("still held %d, want 600", open.Open())
	}
}
