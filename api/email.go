package api

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/wneessen/go-mail"
)

// Email is one notice e-mail to send.
type Email struct {
	// MessageID is the same in every attempt of one notice, so a mail
	// system that got it twice can tell.
	MessageID string
	To        []string
	Subject   string
	Body      string // plain text
}

// Mailer sends notice e-mails. An error that IsPermanentMail is not
// retried (the server refused the message or its recipients for good).
type Mailer interface {
	Send(ctx context.Context, e Email) error
}

// permanentMail marks a refusal that repeating will not change.
type permanentMail struct{ error }

func (p permanentMail) Unwrap() error { return p.error }

// IsPermanentMail reports a send error not worth retrying.
func IsPermanentMail(err error) bool {
	var p permanentMail
	return errors.As(err, &p)
}

// SMTPConfig is how notice e-mails reach the operator's mail server.
type SMTPConfig struct {
	// Addr is the server as host:port (587 for submission with STARTTLS,
	// 465 for implicit TLS, 25 for relay).
	Addr string
	// From is the sender address.
	From string
	// Security: "starttls" (default: the server must offer STARTTLS, and
	// its certificate must verify), "starttls-optional" (STARTTLS when
	// offered, plain text otherwise), "tls" (implicit TLS from the first
	// byte) or "none" (plain text; only for a relay on a trusted network).
	Security string
	// Auth: "" (PLAIN when Username is set, none otherwise), "none",
	// "plain", "login", "cram-md5", "scram-sha-256" or "auto" (the best
	// the server offers). PLAIN and LOGIN are refused over plain text.
	Auth               string
	Username, Password string
	// TLS is the client TLS configuration (RootCAs for a private CA); the
	// server name comes from Addr when it sets none.
	TLS     *tls.Config
	Timeout time.Duration // per connection (default 15 s)
}

// SMTPSecurities and SMTPAuths are the values SMTPConfig accepts.
var (
	SMTPSecurities = []string{"starttls", "starttls-optional", "tls", "none"}
	SMTPAuths      = []string{"", "none", "plain", "login", "cram-md5", "scram-sha-256", "auto"}
)

// SMTPMailer sends through an SMTP server with go-mail.
type SMTPMailer struct {
	from string
	opts []mail.Option
	host string
}

// NewSMTPMailer checks cfg and returns the mailer; nothing is dialled yet.
func NewSMTPMailer(cfg SMTPConfig) (*SMTPMailer, error) {
	host, portS, err := net.SplitHostPort(cfg.Addr)
	if err != nil || host == "" {
		return nil, fmt.Errorf("smtp: address %q is not host:port", cfg.Addr)
	}
	port, err := strconv.Atoi(portS)
	if err != nil || port <= 0 || port > 65535 {
		return nil, fmt.Errorf("smtp: port %q is not a port number", portS)
	}
	if cfg.From == "" {
		return nil, errors.New("smtp: a sender address (From) is required")
	}
	if err := mail.NewMsg().From(cfg.From); err != nil {
		return nil, fmt.Errorf("smtp: sender %q: %w", cfg.From, err)
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = 15 * time.Second
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.TLS != nil {
		tc = cfg.TLS.Clone()
	}
	if tc.ServerName == "" {
		tc.ServerName = host
	}
	opts := []mail.Option{mail.WithPort(port), mail.WithTimeout(timeout), mail.WithTLSConfig(tc)}
	switch cfg.Security {
	case "", "starttls":
		opts = append(opts, mail.WithTLSPolicy(mail.TLSMandatory))
	case "starttls-optional":
		opts = append(opts, mail.WithTLSPolicy(mail.TLSOpportunistic))
	case "tls":
		opts = append(opts, mail.WithSSL())
	case "none":
		opts = append(opts, mail.WithTLSPolicy(mail.NoTLS))
	default:
		return nil, fmt.Errorf("smtp: security %q is not one of %s", cfg.Security, strings.Join(SMTPSecurities, ", "))
	}
	auth := cfg.Auth
	if auth == "" {
		auth = "none"
		if cfg.Username != "" {
			auth = "plain"
		}
	}
	if auth != "none" {
		var t mail.SMTPAuthType
		if err := t.UnmarshalString(auth); err != nil || auth == "custom" {
			return nil, fmt.Errorf("smtp: auth %q is not one of %s", cfg.Auth, strings.Join(SMTPAuths[1:], ", "))
		}
		if cfg.Username == "" {
			return nil, fmt.Errorf("smtp: auth %s needs a username", auth)
		}
		opts = append(opts, mail.WithSMTPAuth(t), mail.WithUsername(cfg.Username), mail.WithPassword(cfg.Password))
	}
	return &SMTPMailer{from: cfg.From, opts: opts, host: host}, nil
}

// Send delivers e over one connection.
func (m *SMTPMailer) Send(ctx context.Context, e Email) error {
	msg := mail.NewMsg()
	if err := msg.From(m.from); err != nil {
		return permanentMail{fmt.Errorf("sender: %w", err)}
	}
	if err := msg.To(e.To...); err != nil {
		return permanentMail{fmt.Errorf("recipients: %w", err)}
	}
	msg.Subject(e.Subject)
	msg.SetBodyString(mail.TypeTextPlain, e.Body)
	msg.SetDate()
	if e.MessageID != "" {
		msg.SetMessageIDWithValue(e.MessageID)
	} else {
		msg.SetMessageID()
	}
	c, err := mail.NewClient(m.host, m.opts...)
	if err != nil {
		return fmt.Errorf("smtp client: %w", err)
	}
	err = c.DialAndSendWithContext(ctx, msg)
	// A 5xx answer to the sender, a recipient or the message is final;
	// anything else (connection, TLS, authentication, 4xx) may pass later.
	var se *mail.SendError
	if errors.As(err, &se) && !se.IsTemp() && se.ErrorCode() >= 500 &&
		(se.Reason == mail.ErrSMTPMailFrom || se.Reason == mail.ErrSMTPRcptTo || se.Reason == mail.ErrSMTPData || se.Reason == mail.ErrSMTPDataClose) {
		return permanentMail{err}
	}
	return err
}
