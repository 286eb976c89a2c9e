package simulator

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/antaca/antaca/api/jwe"
	"github.com/antaca/antaca/authz"
)

// Bureau endpoints of the API (admin channel, roles Admin or Bureau; see
// api/README.md, "Admin roles"): the physical cards waiting for
// personalisation, and the report after which the platform links a card to
// its user's balance.
const (
	BureauOrdersPath = "/admin/bureau/orders"
	BureauReportPath = "/admin/bureau/cards/{cardId}/personalised"
)

// RESTConfig configures a RESTIssuer.
type RESTConfig struct {
	// BaseURL is the API root, e.g. https://127.0.0.1:8443.
	BaseURL string
	// RootCAs verify the server certificate (system roots when nil).
	RootCAs *x509.CertPool
	// AdminUser and AdminPassword log in at POST /admin/login for the
	// admin channel (partners, partner balances, bureau).
	AdminUser, AdminPassword string
	// PartnerCA, when set, signs the client certificate of every partner
	// CreatePartner creates; the files go to CertDir.
	PartnerCA *CA
	CertDir   string
	// Timeout bounds one HTTP request (default 10s).
	Timeout time.Duration
}

// RESTIssuer implements Issuer over the REST API (api/openapi.yaml): partner
// calls on /secure with the partner's client certificate, admin calls with
// an admin session, PIN setting on /customers/me with a customer session,
// and JWE where the API requires it.
type RESTIssuer struct {
	cfg  RESTConfig
	base *url.URL
	jwe  *rsa.PrivateKey
	pub  string // base64 of the PEM of jwe's public key, the Public-Key header

	mu         sync.Mutex
	adminToken string
	serverKey  *rsa.PublicKey
	clients    map[string]*http.Client // by client certificate file; "" = no certificate
}

var _ Issuer = (*RESTIssuer)(nil)

// NewRESTIssuer prepares a client; it does not contact the server.
func NewRESTIssuer(cfg RESTConfig) (*RESTIssuer, error) {
	u, err := url.Parse(strings.TrimRight(cfg.BaseURL, "/"))
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("API URL %q: want scheme://host:port", cfg.BaseURL)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("generating JWE key: %w", err)
	}
	pub, err := jwe.EncodePublicKey(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	return &RESTIssuer{cfg: cfg, base: u, jwe: key, pub: pub, clients: map[string]*http.Client{}}, nil
}

// ErrPlainHTTP means the server behind an https:// API URL answered in
// plain HTTP; ErrNeedsHTTPS that the server behind an http:// URL speaks
// HTTPS. Either way the URL's scheme is wrong.
var (
	ErrPlainHTTP  = errors.New("the API answers plain HTTP, not HTTPS")
	ErrNeedsHTTPS = errors.New("the API speaks HTTPS, not plain HTTP")
)

// PlainHTTP reports whether the API URL is plain http://. Partner calls
// (/secure) cannot work there: the switch identifies a partner by its TLS
// client certificate.
func (r *RESTIssuer) PlainHTTP() bool { return r.base.Scheme == "http" }

// URL is the API root the issuer talks to.
func (r *RESTIssuer) URL() string { return r.base.Redacted() }

// transportError explains a request that got no HTTP answer; a plain-HTTP
// answer to an https:// URL says which URL to use instead.
func (r *RESTIssuer) transportError(op string, err error) error {
	if errors.Is(err, http.ErrSchemeMismatch) {
		return fmt.Errorf("%s: %w: use --api-url http://%s (an `antaca serve` without ANTACA_TLS_CERT, such as `make run`, serves plain HTTP)",
			op, ErrPlainHTTP, r.base.Host)
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("%s: %w (is `antaca serve` running there?)", op, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// httpsRefusal recognises the 400 with which an HTTPS server (Go's and
// nginx's wording) answers a plain-HTTP request.
func httpsRefusal(status int, body []byte) bool {
	return status == http.StatusBadRequest &&
		(bytes.Contains(body, []byte("HTTP request to an HTTPS server")) || bytes.Contains(body, []byte("plain HTTP request was sent to HTTPS port")))
}

func (r *RESTIssuer) needsHTTPS(op string) error {
	return fmt.Errorf("%s: %w: use --api-url https://%s (with --api-ca, the CA of the switch's certificate, unless the system trusts it)",
		op, ErrNeedsHTTPS, r.base.Host)
}

// Ping checks that the REST API answers GET /openapi.yaml with the
// configured scheme and CA, and says why not (scheme, TLS, dial, timeout,
// status).
func (r *RESTIssuer) Ping(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.base.String()+"/openapi.yaml", nil)
	if err != nil {
		return err
	}
	hc, err := r.client("", "")
	if err != nil {
		return err
	}
	op := "reaching the API at " + r.URL()
	resp, err := hc.Do(req)
	if err != nil {
		return r.transportError(op, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if httpsRefusal(resp.StatusCode, body) {
		return r.needsHTTPS(op)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %q", req.URL.Redacted(), resp.Status, body)
	}
	return nil
}

func (r *RESTIssuer) client(certFile, keyFile string) (*http.Client, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.clients[certFile]; ok {
		return c, nil
	}
	tc := &tls.Config{RootCAs: r.cfg.RootCAs, MinVersion: tls.VersionTLS12}
	if certFile != "" {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("loading partner client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{pair}
	}
	c := &http.Client{Timeout: r.cfg.Timeout, Transport: &http.Transport{TLSClientConfig: tc, MaxIdleConnsPerHost: 16}}
	r.clients[certFile] = c
	return c, nil
}

// call describes one API call.
type call struct {
	op      string
	method  string
	path    string
	partner *Partner // /secure: the partner's client certificate
	bearer  string   // Authorization: Bearer
	body    any
	// encrypt sends the JWE headers, encrypts the body to the server key
	// and decrypts an encrypted response.
	encrypt bool
}

func (r *RESTIssuer) do(ctx context.Context, c call, out any) error {
	var body io.Reader
	var plain []byte
	if c.body != nil {
		var err error
		if plain, err = json.Marshal(c.body); err != nil {
			return fmt.Errorf("%s: encoding body: %w", c.op, err)
		}
		if c.encrypt {
			payload, err := r.encryptPayload(ctx, plain)
			if err != nil {
				return fmt.Errorf("%s: %w", c.op, err)
			}
			plain, _ = json.Marshal(map[string]string{"payload": payload})
		}
		body = bytes.NewReader(plain)
	}
	req, err := http.NewRequestWithContext(ctx, c.method, r.base.String()+c.path, body)
	if err != nil {
		return fmt.Errorf("%s: %w", c.op, err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.bearer != "" {
		req.Header.Set("Authorization", "Bearer "+c.bearer)
	}
	if c.encrypt {
		req.Header.Set("Encrypted-Request", "true")
		req.Header.Set("Public-Key", r.pub)
	}
	certFile, keyFile := "", ""
	if c.partner != nil {
		certFile, keyFile = c.partner.ClientCert, c.partner.ClientKey
		if certFile == "" {
			return fmt.Errorf("%s: partner %s has no client certificate for /secure (give the partner CA with --partner-ca-cert/--partner-ca-key, or use --direct)", c.op, c.partner.ID)
		}
	}
	hc, err := r.client(certFile, keyFile)
	if err != nil {
		return fmt.Errorf("%s: %w", c.op, err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return r.transportError(c.op, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("%s: reading response: %w", c.op, err)
	}
	if httpsRefusal(resp.StatusCode, raw) {
		return r.needsHTTPS(c.op)
	}
	if resp.StatusCode >= 300 {
		ae := &APIError{Status: resp.StatusCode, Op: c.op}
		var e struct{ Code, Message string }
		if json.Unmarshal(raw, &e) == nil {
			ae.Code, ae.Message = e.Code, e.Message
		}
		if ae.Code == "" {
			ae.Code = http.StatusText(resp.StatusCode)
		}
		if ae.Code == "CLIENT_CERTIFICATE_REQUIRED" && r.PlainHTTP() {
			ae.Message += " (over plain HTTP the switch never sees one: partner calls need an HTTPS API with ANTACA_PARTNER_CA, or use --direct)"
		}
		return ae
	}
	if out == nil || len(bytes.TrimSpace(raw)) == 0 {
		return nil
	}
	if c.encrypt {
		var env struct {
			Payload string `json:"payload"`
		}
		if json.Unmarshal(raw, &env) == nil && env.Payload != "" {
			if raw, err = r.decryptPayload(env.Payload); err != nil {
				return fmt.Errorf("%s: %w", c.op, err)
			}
		}
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("%s: decoding response: %w", c.op, err)
	}
	return nil
}

// serverPublicKey fetches the server's JWE key from GET /public-key (PEM).
func (r *RESTIssuer) serverPublicKey(ctx context.Context) (*rsa.PublicKey, error) {
	r.mu.Lock()
	k := r.serverKey
	r.mu.Unlock()
	if k != nil {
		return k, nil
	}
	hc, err := r.client("", "")
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.base.String()+"/public-key", nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, r.transportError("fetching server public key", err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if httpsRefusal(resp.StatusCode, raw) {
		return nil, r.needsHTTPS("fetching server public key")
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetching server public key: status %d", resp.StatusCode)
	}
	if !bytes.Contains(raw, []byte("-----BEGIN")) {
		// Some servers wrap the PEM in JSON.
		var j map[string]string
		if json.Unmarshal(raw, &j) == nil {
			for _, v := range j {
				if strings.Contains(v, "-----BEGIN") {
					raw = []byte(v)
				}
			}
		}
	}
	rk, err := jwe.ParsePublicKeyPEM(raw)
	if err != nil {
		return nil, fmt.Errorf("parsing server public key: %w", err)
	}
	r.mu.Lock()
	r.serverKey = rk
	r.mu.Unlock()
	return rk, nil
}

func (r *RESTIssuer) encryptPayload(ctx context.Context, plain []byte) (string, error) {
	key, err := r.serverPublicKey(ctx)
	if err != nil {
		return "", err
	}
	return jwe.Encrypt(plain, key, jwe.AlgRSAOAEP256)
}

func (r *RESTIssuer) decryptPayload(s string) ([]byte, error) {
	return jwe.Decrypt(s, r.jwe)
}

// admin returns an admin session token, logging in on first use.
func (r *RESTIssuer) admin(ctx context.Context, renew bool) (string, error) {
	r.mu.Lock()
	tok := r.adminToken
	r.mu.Unlock()
	if tok != "" && !renew {
		return tok, nil
	}
	if r.cfg.AdminUser == "" {
		return "", errors.New("admin call needs --admin-user and --admin-password (or --direct, to act in process on the switch's Redis)")
	}
	var out struct {
		Token string `json:"token"`
	}
	err := r.do(ctx, call{op: "admin login", method: http.MethodPost, path: "/admin/login",
		body: map[string]string{"username": r.cfg.AdminUser, "password": r.cfg.AdminPassword}}, &out)
	if err != nil {
		return "", err
	}
	r.mu.Lock()
	r.adminToken = out.Token
	r.mu.Unlock()
	return out.Token, nil
}

// adminDo runs an admin call, logging in again once when the session expired.
func (r *RESTIssuer) adminDo(ctx context.Context, c call, out any) error {
	tok, err := r.admin(ctx, false)
	if err != nil {
		return err
	}
	c.bearer = tok
	err = r.do(ctx, c, out)
	if ae, ok := AsAPIError(err); ok && ae.Status == http.StatusUnauthorized {
		if tok, err = r.admin(ctx, true); err != nil {
			return err
		}
		c.bearer = tok
		err = r.do(ctx, c, out)
	}
	return err
}

func esc(s string) string { return url.PathEscape(s) }

func secure(customerID string, rest ...string) string {
	p := "/secure/customers/" + esc(customerID)
	for _, s := range rest {
		p += "/" + s
	}
	return p
}

// CreatePartner implements Issuer: POST /admin/partners, its partner
// balance, the reload, and (with a partner CA) its client certificate.
func (r *RESTIssuer) CreatePartner(ctx context.Context, s PartnerSpec) (Partner, error) {
	if s.Name == "" {
		s.Name = s.ID
	}
	err := r.adminDo(ctx, call{op: "creating partner", method: http.MethodPost, path: "/admin/partners",
		body: map[string]any{"id": s.ID, "name": s.Name, "bin": s.BIN, "currency": s.Currency, "fundingModel": s.FundingModel, "digitalFirst": s.DigitalFirst}}, nil)
	if err != nil {
		return Partner{}, err
	}
	p := Partner{ID: s.ID, Name: s.Name, BIN: s.BIN, Currency: s.Currency, FundingModel: s.FundingModel}
	var bal struct {
		ID string `json:"id"`
	}
	err = r.adminDo(ctx, call{op: "creating partner balance", method: http.MethodPost, path: "/admin/partners/" + esc(s.ID) + "/balances",
		body: map[string]any{"type": s.FundingModel, "currency": s.Currency, "lowBalanceThreshold": s.LowBalanceThreshold}}, &bal)
	if err != nil {
		return Partner{}, err
	}
	p.BalanceID = bal.ID
	if s.Funds > 0 {
		if err := r.ReloadPartnerBalance(ctx, p, s.Funds); err != nil {
			return Partner{}, err
		}
	}
	if r.cfg.PartnerCA != nil {
		if err := r.issuePartnerCert(&p); err != nil {
			return Partner{}, err
		}
	}
	return p, nil
}

func (r *RESTIssuer) issuePartnerCert(p *Partner) error {
	certPEM, keyPEM, err := r.cfg.PartnerCA.IssueClient(p.ID)
	if err != nil {
		return err
	}
	dir := r.cfg.CertDir
	if dir == "" {
		dir = "."
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating certificate directory: %w", err)
	}
	p.ClientCert = filepath.Join(dir, "partner-"+p.ID+".crt")
	p.ClientKey = filepath.Join(dir, "partner-"+p.ID+".key")
	if err := os.WriteFile(p.ClientCert, certPEM, 0o644); err != nil {
		return err
	}
	return os.WriteFile(p.ClientKey, keyPEM, 0o600)
}

// ReloadPartnerBalance implements Issuer.
func (r *RESTIssuer) ReloadPartnerBalance(ctx context.Context, p Partner, amount int64) error {
	return r.adminDo(ctx, call{op: "reloading partner balance", method: http.MethodPost,
		path: "/admin/partners/" + esc(p.ID) + "/balances/" + esc(p.BalanceID) + "/reload",
		body: map[string]any{"amount": amount, "currency": p.Currency}}, nil)
}

// CreateCustomer implements Issuer.
func (r *RESTIssuer) CreateCustomer(ctx context.Context, p Partner, externalID, lastName string, verified bool) (Customer, error) {
	var c Customer
	if lastName == "" {
		lastName = "User"
	}
	err := r.do(ctx, call{op: "registering customer", method: http.MethodPost, path: "/secure/customers", partner: &p,
		body: map[string]string{"externalId": externalID, "firstName": "Sim", "lastName": lastName,
			"email": externalID + "@sim.invalid", "phone": "+4915100000000"}}, &c)
	if err != nil {
		return Customer{}, err
	}
	if verified {
		err := r.do(ctx, call{op: "setting KYC", method: http.MethodPut, path: secure(c.ID, "kyc"), partner: &p,
			body: map[string]string{"status": "VERIFIED"}}, nil)
		if err != nil {
			return Customer{}, err
		}
		c.KYCStatus = "VERIFIED"
	}
	return c, nil
}

// StartKYC implements Issuer.
func (r *RESTIssuer) StartKYC(ctx context.Context, p Partner, customerID string) (Customer, error) {
	var c Customer
	err := r.do(ctx, call{op: "starting KYC", method: http.MethodPost, path: secure(customerID, "register"), partner: &p}, &c)
	return c, err
}

// GetCustomer implements Issuer.
func (r *RESTIssuer) GetCustomer(ctx context.Context, p Partner, customerID string) (Customer, error) {
	var c Customer
	err := r.do(ctx, call{op: "reading customer", method: http.MethodGet, path: secure(customerID), partner: &p}, &c)
	return c, err
}

// CreateBalance implements Issuer.
func (r *RESTIssuer) CreateBalance(ctx context.Context, p Partner, customerID, currency string) (Balance, error) {
	var b Balance
	err := r.do(ctx, call{op: "creating balance", method: http.MethodPost, path: secure(customerID, "balances"), partner: &p,
		body: map[string]string{"currency": currency}}, &b)
	return b, err
}

// Reload implements Issuer.
func (r *RESTIssuer) Reload(ctx context.Context, p Partner, customerID, balanceID string, amount int64) error {
	return r.do(ctx, call{op: "reloading balance", method: http.MethodPost, path: secure(customerID, "balances", esc(balanceID), "reload"),
		partner: &p, body: map[string]any{"amount": amount}}, nil)
}

// GetBalance implements Issuer.
func (r *RESTIssuer) GetBalance(ctx context.Context, p Partner, customerID, balanceID string) (Balance, error) {
	var b Balance
	err := r.do(ctx, call{op: "reading balance", method: http.MethodGet, path: secure(customerID, "balances", esc(balanceID)), partner: &p}, &b)
	return b, err
}

// cardBody is the union of the card shapes the API answers: the view
// (id, type, status, ...) and the full data (cardNo, exp, cvv).
type cardBody struct {
	ID         string `json:"id"`
	Type       string `json:"type"`
	Status     string `json:"status"`
	CardNo     string `json:"cardNo"`
	Exp        string `json:"exp"`
	Expiry     string `json:"expiry"`
	CVV        string `json:"cvv"`
	BalanceID  string `json:"balanceId"`
	CustomerID string `json:"customerId"`
	CopyOf     string `json:"copyOf"`
	Card       *struct {
		ID string `json:"id"`
	} `json:"card"`
}

func (b cardBody) card(p Partner, customerID string) Card {
	id := b.ID
	if id == "" && b.Card != nil {
		id = b.Card.ID
	}
	exp := b.Exp
	if exp == "" {
		exp = b.Expiry
	}
	return Card{ID: id, Type: b.Type, Status: b.Status, PartnerID: p.ID, CustomerID: customerID, BalanceID: b.BalanceID,
		PAN: b.CardNo, Expiry: expiryYYMM(exp), CVV: b.CVV, CopyOf: b.CopyOf}
}

// withFullData completes c with the full card data when the creating call
// did not answer it.
func (r *RESTIssuer) withFullData(ctx context.Context, p Partner, customerID string, c Card) (Card, error) {
	if c.PAN != "" && c.Expiry != "" {
		return c, nil
	}
	full, err := r.FullData(ctx, p, customerID, c.ID)
	if err != nil {
		return Card{}, err
	}
	if c.Type != "" {
		full.Type = c.Type
	}
	if full.BalanceID == "" {
		full.BalanceID = c.BalanceID
	}
	return full, nil
}

// IssueVirtual implements Issuer (JWE request and response).
func (r *RESTIssuer) IssueVirtual(ctx context.Context, p Partner, customerID, balanceID string) (Card, error) {
	var b cardBody
	err := r.do(ctx, call{op: "creating virtual card", method: http.MethodPost, path: secure(customerID, "cards", "virtual"),
		partner: &p, encrypt: true, body: map[string]string{"balanceId": balanceID}}, &b)
	if err != nil {
		return Card{}, err
	}
	c := b.card(p, customerID)
	c.BalanceID = balanceID
	if c.Type == "" {
		c.Type = TypeVirtual
	}
	return r.withFullData(ctx, p, customerID, c)
}

var deliveryAddress = map[string]string{"name": "Sim User", "line1": "Simulatorstrasse 1", "city": "Berlin", "postalCode": "10115", "country": "DE"}

// OrderPhysical implements Issuer (JWE).
func (r *RESTIssuer) OrderPhysical(ctx context.Context, p Partner, customerID, balanceID string) (Card, error) {
	var b cardBody
	err := r.do(ctx, call{op: "ordering physical card", method: http.MethodPost, path: secure(customerID, "cards", "physical"),
		partner: &p, encrypt: true, body: map[string]any{"balanceId": balanceID, "deliveryAddress": deliveryAddress}}, &b)
	if err != nil {
		return Card{}, err
	}
	c := b.card(p, customerID)
	c.BalanceID = balanceID
	c.Type = TypePhysical
	return r.withFullData(ctx, p, customerID, c)
}

// Personalise implements Issuer: the bureau's report on the admin channel.
func (r *RESTIssuer) Personalise(ctx context.Context, _ Partner, cardID string) error {
	return r.adminDo(ctx, call{op: "reporting personalisation", method: http.MethodPost,
		path: strings.Replace(BureauReportPath, "{cardId}", esc(cardID), 1)}, nil)
}

// BureauOrder is a plastic awaiting the bureau: an ordered physical card
// to personalise, or (Blank) a digital-first copy to produce with no data
// imprinted.
type BureauOrder struct {
	CardID     string `json:"id"`
	PartnerID  string `json:"partnerId"`
	CustomerID string `json:"customerId"`
	Status     string `json:"status"`
	Blank      bool   `json:"blank"`
}

// BureauOrders lists the cards the bureau has to personalise.
func (r *RESTIssuer) BureauOrders(ctx context.Context) ([]BureauOrder, error) {
	var raw json.RawMessage
	if err := r.adminDo(ctx, call{op: "listing bureau orders", method: http.MethodGet, path: BureauOrdersPath}, &raw); err != nil {
		return nil, err
	}
	var list struct {
		Orders []BureauOrder `json:"orders"`
	}
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, fmt.Errorf("decoding bureau orders: %w", err)
	}
	return list.Orders, nil
}

// Activate implements Issuer.
func (r *RESTIssuer) Activate(ctx context.Context, p Partner, customerID, cardID string) error {
	return r.do(ctx, call{op: "activating card", method: http.MethodPost, path: secure(customerID, "cards", esc(cardID), "activate"), partner: &p}, nil)
}

// Print implements Issuer (JWE).
func (r *RESTIssuer) Print(ctx context.Context, p Partner, customerID, cardID string) (Card, error) {
	var b cardBody
	err := r.do(ctx, call{op: "printing digital-first card", method: http.MethodPost, path: secure(customerID, "cards", esc(cardID), "print"),
		partner: &p, encrypt: true, body: map[string]any{"deliveryAddress": deliveryAddress}}, &b)
	if err != nil {
		return Card{}, err
	}
	c := b.card(p, customerID)
	c.Type = TypeDigitalFirst
	c.CopyOf = cardID
	return r.withFullData(ctx, p, customerID, c)
}

// SetPIN implements Issuer: a customer session from the partner, then the
// JWE-encrypted POST /customers/me/cards/{cardId}/pin.
func (r *RESTIssuer) SetPIN(ctx context.Context, p Partner, customerID, cardID, pin string) error {
	var sess struct {
		Token string `json:"token"`
	}
	err := r.do(ctx, call{op: "opening customer session", method: http.MethodPost, path: secure(customerID, "sessions"), partner: &p}, &sess)
	if err != nil {
		return err
	}
	return r.do(ctx, call{op: "setting PIN", method: http.MethodPost, path: "/customers/me/cards/" + esc(cardID) + "/pin",
		bearer: sess.Token, encrypt: true, body: map[string]string{"pin": pin}}, nil)
}

// FullData implements Issuer (JWE response).
func (r *RESTIssuer) FullData(ctx context.Context, p Partner, customerID, cardID string) (Card, error) {
	var b cardBody
	err := r.do(ctx, call{op: "reading card data", method: http.MethodGet, path: secure(customerID, "cards", esc(cardID)), partner: &p, encrypt: true}, &b)
	if err != nil {
		return Card{}, err
	}
	c := b.card(p, customerID)
	if c.ID == "" {
		c.ID = cardID
	}
	return c, nil
}

// Lock implements Issuer.
func (r *RESTIssuer) Lock(ctx context.Context, p Partner, customerID, cardID string, reason int) error {
	return r.do(ctx, call{op: "locking card", method: http.MethodPost, path: secure(customerID, "cards", esc(cardID), "lock"),
		partner: &p, body: map[string]int{"reason": reason}}, nil)
}

// ExternalLock implements Issuer: the partner locks on request of a
// network or an acquirer.
func (r *RESTIssuer) ExternalLock(ctx context.Context, p Partner, customerID, cardID string, reason int, source, reference string) error {
	return r.do(ctx, call{op: "locking card from outside", method: http.MethodPost, path: secure(customerID, "cards", esc(cardID), "external-lock"),
		partner: &p, body: map[string]any{"reason": reason, "source": source, "reference": reference}}, nil)
}

// Replace implements Issuer (JWE): the new card, with its full data.
func (r *RESTIssuer) Replace(ctx context.Context, p Partner, customerID, cardID string, keepOld bool) (Card, error) {
	var b struct {
		Card cardBody `json:"card"`
	}
	err := r.do(ctx, call{op: "replacing card", method: http.MethodPost, path: secure(customerID, "cards", esc(cardID), "replace"),
		partner: &p, encrypt: true, body: map[string]any{"keep_old_until_activated": keepOld}}, &b)
	if err != nil {
		return Card{}, err
	}
	c := b.Card.card(p, customerID)
	return r.withFullData(ctx, p, customerID, Card{ID: c.ID, Type: c.Type, Status: c.Status, PartnerID: p.ID,
		CustomerID: customerID, BalanceID: c.BalanceID})
}

// Unlock implements Issuer.
func (r *RESTIssuer) Unlock(ctx context.Context, p Partner, customerID, cardID string) error {
	return r.do(ctx, call{op: "unlocking card", method: http.MethodPost, path: secure(customerID, "cards", esc(cardID), "unlock"), partner: &p}, nil)
}

// Remove implements Issuer.
func (r *RESTIssuer) Remove(ctx context.Context, p Partner, customerID, cardID string) error {
	return r.do(ctx, call{op: "removing card", method: http.MethodDelete, path: secure(customerID, "cards", esc(cardID)), partner: &p}, nil)
}

// SetCardControls implements Issuer: the partner sets the card's controls.
func (r *RESTIssuer) SetCardControls(ctx context.Context, p Partner, customerID, cardID, controls string) error {
	return r.do(ctx, call{op: "setting card controls", method: http.MethodPut, path: secure(customerID, "cards", esc(cardID), "controls"),
		partner: &p, body: json.RawMessage(controls)}, nil)
}

// SetRemote implements Issuer: an admin changes the default program.
func (r *RESTIssuer) SetRemote(ctx context.Context, p Partner, url string, standIn authz.StandIn, timeoutMS int64) (string, error) {
	path := "/admin/partners/" + esc(p.ID) + "/programs/" + esc("prg_"+p.ID)
	var prog map[string]any
	if err := r.adminDo(ctx, call{op: "reading program", method: http.MethodGet, path: path}, &prog); err != nil {
		return "", err
	}
	prog["remoteUrl"], prog["standIn"], prog["decisionTimeoutMs"] = url, standIn, timeoutMS
	for _, k := range []string{"partnerId", "createdAt", "remoteSecret"} {
		delete(prog, k)
	}
	var out struct {
		RemoteSecret string `json:"remoteSecret"`
	}
	err := r.adminDo(ctx, call{op: "setting the program's backend", method: http.MethodPut, path: path, body: prog}, &out)
	return out.RemoteSecret, err
}
