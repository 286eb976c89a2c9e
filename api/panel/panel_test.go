package panel

import (
	"encoding/json"
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
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.calls = append(f.calls, r.Method+" "+r.URL.Path+" "+r.Header.Get("Authorization")+" "+string(body))
	expired := f.expired
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if expired {
		w.WriteHeader(401)
		_, _ = w.Write([]byte(`{"code":"SESSION_EXPIRED","message":"the session has expired"}`))
		return
	}
	switch r.URL.Path {
	case "/admin/session":
		_ = json.NewEncoder(w).Encode(map[string]any{"username": "desk", "role": "Employee", "expiresAt": time.Now().Add(time.Hour)})
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
