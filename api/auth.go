package api

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/antaca/antaca/ledger"
)

// authenticate establishes who calls, by the route's channel, and checks
// the admin role.
func (s *Server) authenticate(c *call) error {
	switch c.rt.ch {
	case partnerCh:
		return s.authPartner(c)
	case customerCh:
		sess, token, err := s.bearerSession(c, kindCustomer)
		if err != nil {
			return err
		}
		c.partnerID, c.customerID, c.token = sess.partnerID, sess.customerID, token
	case adminCh:
		sess, token, err := s.bearerSession(c, kindAdmin)
		if err != nil {
			return err
		}
		a, err := s.adminByName(c.ctx, sess.admin)
		if errors.Is(err, errAdminNotFound) {
			return errUnauthorized // deleted since login: the session dies with it
		}
		if err != nil {
			return err
		}
		c.admin, c.token = a, token
		if !slices.Contains(c.rt.roles, a.Role) {
			return errForbidden
		}
	}
	return nil
}

// authPartner identifies the partner by its verified client certificate.
// The TLS layer (ClientAuth VerifyClientCertIfGiven, ClientCAs = partner CA)
// has already checked the chain; without a verified chain there is no
// partner.
func (s *Server) authPartner(c *call) error {
	tls := c.r.TLS
	if tls == nil || len(tls.VerifiedChains) == 0 || len(tls.VerifiedChains[0]) == 0 {
		return errClientCertRequired
	}
	id := tls.VerifiedChains[0][0].Subject.CommonName
	if id == "" {
		return errUnknownPartner
	}
	if _, err := s.cfg.Ledger.Partner(c.ctx, id); err != nil {
		if errors.Is(err, ledger.ErrNotFound) {
			return errUnknownPartner
		}
		return err
	}
	c.partnerID = id
	return nil
}

// Sessions: an opaque token (32 random bytes, base64url) is handed out
// once; Redis keeps only its SHA-256, so a Redis dump holds no usable
// token. The record outlives its expiry by sessionGrace so that a late
// request learns SESSION_EXPIRED rather than UNAUTHORIZED.
const sessionGrace = time.Hour

const (
	kindCustomer = "customer"
	kindAdmin    = "admin"
)

type session struct {
	kind       string
	partnerID  string
	customerID string
	admin      string
	expiresAt  time.Time
}

func hashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// newSession stores a session and returns its token and expiry.
func (s *Server) newSession(c *call, sess session, ttl time.Duration) (string, time.Time, error) {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", time.Time{}, fmt.Errorf("creating session token: %w", err)
	}
	token := base64.RawURLEncoding.EncodeToString(raw)
	sess.expiresAt = s.now().Add(ttl).UTC().Truncate(time.Second)
	key := s.keys.session(hashToken(token))
	pipe := s.cfg.Redis.TxPipeline()
	pipe.HSet(c.ctx, key, "kind", sess.kind, "partner", sess.partnerID, "customer", sess.customerID,
		"admin", sess.admin, "exp", strconv.FormatInt(sess.expiresAt.Unix(), 10))
	pipe.Expire(c.ctx, key, ttl+sessionGrace)
	if _, err := pipe.Exec(c.ctx); err != nil {
		return "", time.Time{}, fmt.Errorf("storing session: %w", err)
	}
	return token, sess.expiresAt, nil
}

// bearerSession finds the session of the request's bearer token.
func (s *Server) bearerSession(c *call, kind string) (session, string, error) {
	h := c.r.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(h, " ")
	token = strings.TrimSpace(token)
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" || len(token) > 256 {
		return session{}, "", errUnauthorized
	}
	m, err := s.cfg.Redis.HGetAll(c.ctx, s.keys.session(hashToken(token))).Result()
	if err != nil {
		return session{}, "", fmt.Errorf("reading session: %w", err)
	}
	if len(m) == 0 || m["kind"] != kind {
		return session{}, "", errUnauthorized
	}
	exp, err := strconv.ParseInt(m["exp"], 10, 64)
	if err != nil {
		return session{}, "", errUnauthorized
	}
	sess := session{kind: kind, partnerID: m["partner"], customerID: m["customer"], admin: m["admin"], expiresAt: time.Unix(exp, 0)}
	if !s.now().Before(sess.expiresAt) {
		return session{}, "", errSessionExpired
	}
	return sess, token, nil
}

func (s *Server) deleteSession(c *call) error {
	if err := s.cfg.Redis.Del(c.ctx, s.keys.session(hashToken(c.token))).Err(); err != nil {
		return fmt.Errorf("deleting session: %w", err)
	}
	return nil
}

type tokenView struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expiresAt"`
	Username  string    `json:"username,omitempty"`
	Role      Role      `json:"role,omitempty"`
}

// POST /secure/customers/{customerId}/sessions
func (s *Server) createCustomerSession(c *call) (int, any, error) {
	cust, err := c.customer()
	if err != nil {
		return 0, nil, err
	}
	token, exp, err := s.newSession(c, session{kind: kindCustomer, partnerID: cust.PartnerID, customerID: cust.ID}, s.cfg.SessionTTL)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusCreated, tokenView{Token: token, ExpiresAt: exp}, nil
}

// DELETE /customers/me/session and /admin/session
func (s *Server) logout(c *call) (int, any, error) {
	return http.StatusNoContent, nil, s.deleteSession(c)
}

// POST /admin/login
func (s *Server) login(c *call) (int, any, error) {
	var in struct {
		Username *string `json:"username"`
		Password *string `json:"password"`
	}
	if err := c.decode(&in); err != nil {
		return 0, nil, err
	}
	if in.Username == nil || *in.Username == "" || len(*in.Username) > 64 {
		return 0, nil, invalid("username", "username is required (at most 64 characters)")
	}
	if in.Password == nil || *in.Password == "" || len(*in.Password) > 1024 {
		return 0, nil, invalid("password", "password is required (at most 1024 characters)")
	}
	keys := s.loginKeys(strings.ToLower(*in.Username), clientIP(c.r))
	if wait, err := s.loginWait(c.ctx, keys); err != nil {
		return 0, nil, err
	} else if wait > 0 {
		c.retryAfter = wait
		s.log.InfoContext(c.ctx, "admin login throttled", "ip", clientIP(c.r), "wait", wait)
		return 0, nil, errTooManyAttempts
	}

	a, hash, err := s.adminCredentials(c.ctx, *in.Username)
	if err != nil && !errors.Is(err, errAdminNotFound) {
		return 0, nil, err
	}
	if a == nil {
		hash = s.dummyHash // same work for unknown names
	}
	if ok := verifyPassword(hash, *in.Password); !ok || a == nil {
		if err := s.loginFailed(c.ctx, keys); err != nil {
			return 0, nil, err
		}
		s.log.InfoContext(c.ctx, "admin login failed", "ip", clientIP(c.r))
		return 0, nil, errBadCredentials
	}
	if err := s.loginSucceeded(c.ctx, keys); err != nil {
		s.log.WarnContext(c.ctx, "admin logged in but the login was not recorded", "err", err)
	}
	token, exp, err := s.newSession(c, session{kind: kindAdmin, admin: a.Username}, s.cfg.AdminSessionTTL)
	if err != nil {
		return 0, nil, err
	}
	s.log.InfoContext(c.ctx, "admin logged in", "admin", a.Username, "role", a.Role)
	return http.StatusOK, tokenView{Token: token, ExpiresAt: exp, Username: a.Username, Role: a.Role}, nil
}

// clientIP is the peer address. X-Forwarded-For is not trusted: a proxy in
// front of the API must be accounted for by whoever deploys one.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
