package app

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// keysExist reports whether dir already holds the server's keys (their
// first file, jwe.pem), so that start-up can say whether it created them.
func keysExist(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "jwe.pem"))
	return !errors.Is(err, fs.ErrNotExist)
}

// logStartup writes the short block a new user needs on start: where the
// keys are (and whether they were just created), whether an admin exists
// and how to create one, and where each listener is. Secrets and store
// URLs (which may carry passwords) are never written.
func (a *App) logStartup(ctx context.Context) {
	dir := a.cfg.KeysDir
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	if a.keysCreated {
		a.log.Info("keys created: back this directory up with the database (stored PANs need it)", "keys_dir", dir)
	} else {
		a.log.Info("keys loaded", "keys_dir", dir)
	}

	qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	var admins int
	err := a.DB.QueryRow(qctx, `SELECT count(*) FROM admins`).Scan(&admins)
	cancel()
	switch {
	case err != nil:
		a.log.Warn("could not count admins", "err", err)
	case admins == 0:
		a.log.Warn("no admin yet: set ANTACA_ADMIN_USER and ANTACA_ADMIN_PASSWORD (at least " +
			strconv.Itoa(MinAdminPasswordLen) + " characters) and restart to create one for the /admin API")
	case a.cfg.AdminUser != "":
		a.log.Info("admins present", "admins", admins, "bootstrap_admin", a.cfg.AdminUser)
	default:
		a.log.Info("admins present", "admins", admins)
	}

	isoTLS := a.cfg.ISOTLSCert != ""
	a.log.Info("ISO 8583 listening", "addr", a.ISOAddr(), "profile", a.cfg.ISOProfile, "framing", a.cfg.ISOFraming, "tls", isoTLS)
	base := httpBase(a.HTTPAddr(), a.cfg.TLSCert != "")
	a.log.Info("HTTP listening: REST API, /healthz, /readyz", "addr", a.HTTPAddr(), "url", base)
	a.log.Info("metrics", "url", base+"/metrics")
}

// httpBase is the URL a person on this machine opens for a listener bound
// to addr: an unspecified host ([::], 0.0.0.0) becomes localhost.
func httpBase(addr string, tls bool) string {
	scheme := "http"
	if tls {
		scheme = "https"
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return scheme + "://" + addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "localhost"
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}
