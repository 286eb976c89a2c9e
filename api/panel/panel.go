// Package panel is the administration panel: web pages at /panel/ for
// support agents and program managers, served by the switch's HTTP
// listener. Pages are rendered on the server with html/template; the CSS
// and the little JavaScript there is are embedded in the binary.
//
// The panel has no rules of its own. Every read and every action is a
// request to the /admin REST API (api/openapi.yaml), built from the form
// and served in-process by the same handler that serves /admin, with the
// signed-in admin's session token: the API authenticates, checks the role
// and applies the rule, exactly as for any other /admin client. The panel
// only hides what the role cannot do (from the API's own route table,
// api.Routes), and turns the API's answers into pages.
//
// Sessions: signing in is POST /admin/login; the admin session token it
// returns is kept in a cookie (HttpOnly, SameSite=Strict, Path=/panel/,
// Secure under TLS) and expires with the session (the switch's admin
// session TTL). Every state-changing form carries a CSRF token derived
// from the session token. Pages are sent with a Content-Security-Policy
// that allows no inline script or style. No page shows a full PAN, a CVV2
// or a PIN: the API never gives them to an admin.
package panel

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/antaca/antaca/api"
	"github.com/antaca/antaca/api/jwe"
	"github.com/antaca/antaca/authz"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Status is what the dashboard shows about the switch itself.
type Status struct {
	Ready bool
	// Problem says why the switch is not ready ("recovering", "redis
	// unreachable" ...); empty when ready.
	Problem string
	// Journal entries not yet written to Postgres, and the age of the oldest.
	LagEntries int64
	LagAge     time.Duration
}

// Config wires the panel.
type Config struct {
	// API serves the /admin routes (an *api.Server).
	API http.Handler
	// Status reports readiness and write-behind lag; nil shows "unknown".
	Status func(context.Context) Status
	// ActionCode gives the DE39 the switch answers for a reason, in its
	// configured ISO profile; nil shows reasons only.
	ActionCode func(authz.Reason) string
	Logger     *slog.Logger
}

// Panel is the administration panel; it is an http.Handler for /panel/.
type Panel struct {
	cfg   Config
	log   *slog.Logger
	mux   *http.ServeMux
	pages map[string]*template.Template
	roles map[string][]api.Role // "METHOD /admin/..." -> roles allowed

	keyMu     sync.Mutex
	key       *rsa.PrivateKey // the panel's own key for JWE answers
	serverKey *rsa.PublicKey
}

// Prefix is where the panel is mounted.
const Prefix = "/panel/"

const (
	sessionCookie = "antaca_panel"
	loginCookie   = "antaca_panel_login"
)

// New parses the templates and builds the routes.
func New(cfg Config) (*Panel, error) {
	if cfg.API == nil {
		return nil, errors.New("panel: API is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	p := &Panel{cfg: cfg, log: cfg.Logger, pages: map[string]*template.Template{}, roles: map[string][]api.Role{}}
	for _, r := range api.Routes() {
		p.roles[r.Pattern] = r.Roles
	}
	// layout.html and the partials (_*.html) are parsed into every page.
	base, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/_*.html")
	if err != nil {
		return nil, fmt.Errorf("panel: parsing layout: %w", err)
	}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		name := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if name == "layout" || strings.HasPrefix(name, "_") {
			continue
		}
		t, err := template.Must(base.Clone()).ParseFS(templateFS, n)
		if err != nil {
			return nil, fmt.Errorf("panel: parsing %s: %w", n, err)
		}
		p.pages[name] = t
	}
	static, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, err
	}
	m := http.NewServeMux()
	files := http.StripPrefix(Prefix+"static/", http.FileServerFS(static))
	m.Handle("GET "+Prefix+"static/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=300")
		files.ServeHTTP(w, r)
	}))
	m.HandleFunc("GET "+Prefix+"login", p.loginPage)
	m.HandleFunc("POST "+Prefix+"login", p.login)
	m.HandleFunc("GET "+Prefix+"signed-out", p.signedOut)
	m.HandleFunc("POST "+Prefix+"logout", p.withSession(p.logout))
	m.HandleFunc("GET "+Prefix+"{$}", p.withSession(p.dashboard))
	m.HandleFunc("GET "+Prefix+"customers", p.withSession(p.customers))
	m.HandleFunc("POST "+Prefix+"customers", p.withSession(p.registerCustomer))
	m.HandleFunc("GET "+Prefix+"customers/{id}", p.withSession(p.customer))
	m.HandleFunc("POST "+Prefix+"customers/{id}/kyc", p.withSession(p.setKYC))
	m.HandleFunc("POST "+Prefix+"customers/{id}/cards/physical", p.withSession(p.orderPhysical))
	m.HandleFunc("POST "+Prefix+"customers/{id}/cards/virtual", p.withSession(p.issueVirtual))
	m.HandleFunc("POST "+Prefix+"balances/{id}/reload", p.withSession(p.reloadBalance))
	m.HandleFunc("GET "+Prefix+"cards/{id}", p.withSession(p.card))
	m.HandleFunc("GET "+Prefix+"cards/{id}/remove", p.withSession(p.confirmRemove))
	m.HandleFunc("GET "+Prefix+"cards/{id}/transactions/{txn}", p.withSession(p.transaction))
	m.HandleFunc("GET "+Prefix+"cards/{id}/messages", p.withSession(p.messages))
	m.HandleFunc("POST "+Prefix+"cards/{id}/{action}", p.withSession(p.cardAction))
	m.HandleFunc("POST "+Prefix+"cards/{id}/controls", p.withSession(p.setCardControls))
	m.HandleFunc("GET "+Prefix+"cards/{id}/controls/reset", p.withSession(p.confirmControlsReset))
	m.HandleFunc("POST "+Prefix+"cards/{id}/controls/reset", p.withSession(p.resetCardControls))
	m.HandleFunc("GET "+Prefix+"partners", p.withSession(p.partners))
	m.HandleFunc("POST "+Prefix+"partners", p.withSession(p.createPartner))
	m.HandleFunc("POST "+Prefix+"partners/{id}/balances", p.withSession(p.createPartnerBalance))
	m.HandleFunc("POST "+Prefix+"partners/{id}/balances/{bid}/reload", p.withSession(p.reloadPartnerBalance))
	m.HandleFunc("GET "+Prefix+"partners/{id}/programs", p.withSession(p.programs))
	m.HandleFunc("POST "+Prefix+"partners/{id}/programs", p.withSession(p.createProgram))
	m.HandleFunc("GET "+Prefix+"partners/{id}/programs/{pid}", p.withSession(p.program))
	m.HandleFunc("POST "+Prefix+"partners/{id}/programs/{pid}", p.withSession(p.updateProgram))
	m.HandleFunc("POST "+Prefix+"partners/{id}/programs/{pid}/controls", p.withSession(p.setProgramControls))
	m.HandleFunc("POST "+Prefix+"partners/{id}/programs/{pid}/replay", p.withSession(p.replay))
	m.HandleFunc("GET "+Prefix+"partners/{id}/webhooks", p.withSession(p.webhooks))
	m.HandleFunc("POST "+Prefix+"partners/{id}/webhooks", p.withSession(p.createWebhook))
	m.HandleFunc("GET "+Prefix+"partners/{id}/webhooks/{eid}", p.withSession(p.deliveries))
	m.HandleFunc("GET "+Prefix+"partners/{id}/webhooks/{eid}/{action}", p.withSession(p.confirmWebhookAction))
	m.HandleFunc("POST "+Prefix+"partners/{id}/webhooks/{eid}/{action}", p.withSession(p.webhookAction))
	m.HandleFunc("POST "+Prefix+"partners/{id}/webhooks/{eid}/deliveries/{did}/redeliver", p.withSession(p.redeliver))
	m.HandleFunc("GET "+Prefix+"bureau", p.withSession(p.bureau))
	m.HandleFunc("POST "+Prefix+"bureau/{id}/personalised", p.withSession(p.personalised))
	m.HandleFunc("GET "+Prefix+"users", p.withSession(p.users))
	m.HandleFunc("POST "+Prefix+"users", p.withSession(p.createUser))
	m.HandleFunc("POST "+Prefix+"users/{name}", p.withSession(p.updateUser))
	p.mux = m
	return p, nil
}

// ServeHTTP serves the panel with its security headers.
func (p *Panel) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "+
		"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=()")
	if r.TLS != nil {
		h.Set("Strict-Transport-Security", "max-age=31536000")
	}
	if !strings.HasPrefix(r.URL.Path, Prefix+"static/") {
		h.Set("Cache-Control", "no-store")
	}
	if _, pattern := p.mux.Handler(r); pattern == "" {
		p.render(w, r, nil, http.StatusNotFound, "message", page{Title: "Not found",
			Message: "There is no such page in the administration panel."})
		return
	}
	p.mux.ServeHTTP(w, r)
}

// session is the signed-in admin, as GET /admin/session tells.
type session struct {
	token     string
	Username  string    `json:"username"`
	Role      api.Role  `json:"role"`
	ExpiresAt time.Time `json:"expiresAt"`
	CSRF      string    `json:"-"`
	// Nav: the sections the role may open.
	Nav map[string]bool `json:"-"`
}

// can reports whether the admin's role may call the /admin route pattern
// ("POST /admin/cards/{cardId}/unlock"), as the API's route table says.
func (s *session) can(p *Panel, pattern string) bool {
	return s != nil && slices.Contains(p.roles[pattern], s.Role)
}

// csrfToken is derived from the session token: only a page of this
// session can know it, and it needs no storage.
func csrfToken(sessionToken string) string {
	m := hmac.New(sha256.New, []byte(sessionToken))
	m.Write([]byte("antaca panel csrf"))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// withSession runs h for a signed-in admin with a live session; POSTs
// must carry the session's CSRF token.
func (p *Panel) withSession(h func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie(sessionCookie)
		if err != nil || c.Value == "" {
			http.Redirect(w, r, Prefix+"login", http.StatusSeeOther)
			return
		}
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
			if err := r.ParseForm(); err != nil {
				p.render(w, r, nil, http.StatusBadRequest, "message", page{Title: "Bad request", Message: "The form could not be read."})
				return
			}
			got := r.PostForm.Get("csrf")
			if subtle.ConstantTimeCompare([]byte(got), []byte(csrfToken(c.Value))) != 1 {
				p.log.InfoContext(r.Context(), "panel: form refused without a valid CSRF token", "path", r.URL.Path)
				p.render(w, r, nil, http.StatusForbidden, "message", page{Title: "Form expired",
					Message: "This form was not sent from a page of your current session (its security token is missing or wrong), so nothing was changed. Reload the page and try again."})
				return
			}
		}
		s := &session{token: c.Value}
		if err := p.call(r, s, "GET", "/admin/session", nil, s); err != nil {
			p.fail(w, r, s, err)
			return
		}
		s.CSRF = csrfToken(c.Value)
		s.Nav = map[string]bool{"partners": s.can(p, "GET /admin/partners"), "users": s.can(p, "GET /admin/users"),
			"dashboard": s.can(p, "GET /admin/authorizations/stats"), "customers": s.can(p, "GET /admin/customers"),
			"bureau": s.can(p, "GET /admin/bureau/orders")}
		h(w, r, s)
	}
}

// apiError is an error answer of the API.
type apiError struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field"`
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message) }

// call sends one /admin request to the API in-process as the admin of s
// (none for login) and decodes a 2xx answer into out. Routes that require
// JWE are encrypted to the server's key, and their answers decrypted with
// the panel's own key. Errors are *apiError, or internal.
func (p *Panel) call(r *http.Request, s *session, method, path string, body, out any) error {
	ctx := r.Context()
	encrypted := p.encrypted(method, path)
	var rd io.Reader = http.NoBody // as a server request: never a nil body
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		if encrypted {
			pub, err := p.serverPublicKey(r)
			if err != nil {
				return err
			}
			if b, err = jwe.SealEnvelope(b, pub); err != nil {
				return fmt.Errorf("encrypting %s %s: %w", method, path, err)
			}
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, path, rd)
	if err != nil {
		return err
	}
	req.RemoteAddr = r.RemoteAddr // login throttling counts the real client
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if s != nil && s.token != "" {
		req.Header.Set("Authorization", "Bearer "+s.token)
	}
	if encrypted {
		key, err := p.ownKey()
		if err != nil {
			return err
		}
		pem, err := jwe.EncodePublicKey(&key.PublicKey)
		if err != nil {
			return err
		}
		req.Header.Set(jwe.HeaderEncrypted, "true")
		req.Header.Set(jwe.HeaderPublicKey, pem)
	}
	rec := &recorder{header: http.Header{}}
	p.cfg.API.ServeHTTP(rec, req)
	if rec.code >= 400 {
		e := &apiError{Status: rec.code}
		if json.Unmarshal(rec.body.Bytes(), e) != nil || e.Code == "" {
			return fmt.Errorf("%s %s answered %d", method, path, rec.code)
		}
		return e
	}
	if out == nil || rec.body.Len() == 0 {
		return nil
	}
	data := rec.body.Bytes()
	if encrypted {
		key, _ := p.ownKey()
		if data, err = jwe.OpenEnvelope(data, key); err != nil {
			return fmt.Errorf("decrypting the answer of %s %s: %w", method, path, err)
		}
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decoding the answer of %s %s: %w", method, path, err)
	}
	return nil
}

// encrypted reports whether the API requires JWE for the request.
func (p *Panel) encrypted(method, path string) bool {
	for _, rt := range routeInfo() {
		if rt.Encrypted && matches(rt.Pattern, method+" "+path) {
			return true
		}
	}
	return false
}

var routeInfo = sync.OnceValue(api.Routes)

// matches compares "POST /admin/cards/{cardId}/cvv" with "POST /admin/cards/crd_1/cvv".
func matches(pattern, req string) bool {
	ps, rs := strings.Split(pattern, "/"), strings.Split(req, "/")
	if len(ps) != len(rs) {
		return false
	}
	for i := range ps {
		if ps[i] != rs[i] && !strings.HasPrefix(ps[i], "{") {
			return false
		}
	}
	return true
}

// ownKey is the panel's RSA key for encrypted answers, made on first use.
func (p *Panel) ownKey() (*rsa.PrivateKey, error) {
	p.keyMu.Lock()
	defer p.keyMu.Unlock()
	if p.key == nil {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, fmt.Errorf("creating the panel's JWE key: %w", err)
		}
		p.key = k
	}
	return p.key, nil
}

// serverPublicKey reads the API's JWE key from GET /public-key once.
func (p *Panel) serverPublicKey(r *http.Request) (*rsa.PublicKey, error) {
	p.keyMu.Lock()
	defer p.keyMu.Unlock()
	if p.serverKey != nil {
		return p.serverKey, nil
	}
	req, err := http.NewRequestWithContext(r.Context(), "GET", "/public-key", http.NoBody)
	if err != nil {
		return nil, err
	}
	rec := &recorder{header: http.Header{}}
	p.cfg.API.ServeHTTP(rec, req)
	if rec.code != http.StatusOK {
		return nil, fmt.Errorf("reading the server's public key: status %d", rec.code)
	}
	k, err := jwe.ParsePublicKeyPEM(rec.body.Bytes())
	if err != nil {
		return nil, fmt.Errorf("reading the server's public key: %w", err)
	}
	p.serverKey = k
	return k, nil
}

// recorder collects the API's answer.
type recorder struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
}
func (r *recorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.body.Write(b)
}

// fail answers an error of the API that no form handles: an ended session
// goes to the signed-out page, the rest to an error page with the API's
// status (403 for a role that may not, 404, 503 ...).
func (p *Panel) fail(w http.ResponseWriter, r *http.Request, s *session, err error) {
	var e *apiError
	if !errors.As(err, &e) {
		p.log.ErrorContext(r.Context(), "panel: request failed", "path", r.URL.Path, "err", err)
		p.render(w, r, s, http.StatusInternalServerError, "message", page{Title: "Something went wrong",
			Message: "The server could not complete this request. Nothing you did caused it; try again, and tell the operators if it persists."})
		return
	}
	switch {
	case e.Status == http.StatusUnauthorized:
		p.clearSession(w, r)
		why := "ended"
		if e.Code == "SESSION_EXPIRED" {
			why = "expired"
		}
		http.Redirect(w, r, Prefix+"signed-out?why="+why, http.StatusSeeOther)
	case e.Status == http.StatusForbidden:
		p.render(w, r, s, http.StatusForbidden, "message", page{Title: "Not allowed",
			Message: "Your role (" + string(roleOf(s)) + ") does not allow this. Nothing was changed."})
	case e.Status == http.StatusNotFound:
		p.render(w, r, s, http.StatusNotFound, "message", page{Title: "Not found", Message: sentence(e.Message)})
	case e.Status == http.StatusServiceUnavailable:
		p.render(w, r, s, http.StatusServiceUnavailable, "message", page{Title: "Temporarily unavailable",
			Message: "The switch cannot serve this right now (" + e.Message + "). Nothing was changed; try again shortly."})
	default:
		p.render(w, r, s, e.Status, "message", page{Title: "Not done", Message: sentence(e.Message)})
	}
}

func roleOf(s *session) api.Role {
	if s == nil {
		return ""
	}
	return s.Role
}

func (p *Panel) setSession(w http.ResponseWriter, r *http.Request, token string) {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: token, Path: Prefix, HttpOnly: true,
		Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
}

func (p *Panel) clearSession(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: Prefix, MaxAge: -1, HttpOnly: true,
		Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
}

// page is what every template gets.
type page struct {
	Title   string
	Nav     string
	Session *session
	Can     map[string]bool // actions of this page the role may use
	Notice  string          // a success message
	Message string          // message page text
	Err     *formError
	Data    any
}

// formError is an API refusal shown next to the form (and field) it
// concerns, with what the admin typed.
type formError struct {
	Form    string
	Field   string
	Message string
	Values  url.Values
	// Code is the API's error code ("" for a form the panel could not read).
	Code string
}

// For reports the message for a form's field ("" when none); a refusal
// not tied to a field shows at the form's top (field "").
func (e *formError) For(form, field string) string {
	if e == nil || e.Form != form {
		return ""
	}
	if e.Field == field || field == "" && !e.fieldShown() {
		return e.Message
	}
	return ""
}

// On reports a refusal of the form.
func (e *formError) On(form string) bool { return e != nil && e.Form == form }

// Value is what the admin typed in a field of the failed form.
func (e *formError) Value(form, field string) string {
	if e == nil || e.Form != form {
		return ""
	}
	return e.Values.Get(field)
}

// All is every value the admin chose in a field of the failed form.
func (e *formError) All(form, field string) []string {
	if e == nil || e.Form != form {
		return nil
	}
	return e.Values[field]
}

// knownFields are the form fields that show their own error.
var knownFields = map[string]bool{"amount": true, "reason": true, "status": true, "username": true, "password": true,
	"role": true, "id": true, "name": true, "bin": true, "currency": true, "fundingModel": true, "type": true,
	"lowBalanceThreshold": true, "balanceId": true, "source": true, "reference": true, "confirm": true, "externalId": true, "firstName": true, "lastName": true, "email": true, "phone": true, "url": true, "events": true, "deliveryAddress.line1": true, "deliveryAddress.city": true,
	"deliveryAddress.postalCode": true, "deliveryAddress.country": true, "deliveryAddress.name": true, "deliveryAddress.line2": true,
	// Programs and spend controls.
	"binRanges": true, "cardTypes": true, "timeZone": true, "remoteUrl": true, "decisionTimeoutMs": true, "standIn": true,
	"standInAmount": true, "per_transaction_max": true, "day_amount": true, "day_count": true, "week_amount": true,
	"week_count": true, "month_amount": true, "month_count": true, "all_time_amount": true, "all_time_count": true,
	"mcc_allow": true, "mcc_block": true, "countries_block": true, "channels_block": true, "since": true, "limits": true,
	// The program a card is issued under.
	"programId": true}

func (e *formError) fieldShown() bool { return knownFields[e.Field] }

// formField is the form field an API error's field names: the API's
// field as it is, but for the controls nested in a program or a replay
// ("controls.mcc_block"), which the forms show as their own fields
// ("mcc_block"). "controls" alone concerns the whole of them: the form's
// top.
func formField(apiField string) string {
	if apiField == "controls" {
		return ""
	}
	return strings.TrimPrefix(apiField, "controls.")
}

func (p *Panel) render(w http.ResponseWriter, r *http.Request, s *session, status int, name string, pg page) {
	t := p.pages[name]
	pg.Session = s
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout.html", pg); err != nil {
		p.log.ErrorContext(r.Context(), "panel: rendering", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// sentence capitalises an API message and ends it with a full stop.
func sentence(s string) string {
	if s == "" {
		return s
	}
	s = strings.ToUpper(s[:1]) + s[1:]
	if !strings.HasSuffix(s, ".") {
		s += "."
	}
	return s
}
