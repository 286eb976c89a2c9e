package app

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

// serverTLS is the HTTPS configuration: the server certificate, and partner
// client certificates verified against ANTACA_PARTNER_CA when one is
// presented (the /secure channel requires one; the others do not).
func serverTLS(cfg Config) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("loading HTTPS certificate: %w", err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if cfg.PartnerCA != "" {
		pem, err := os.ReadFile(cfg.PartnerCA)
		if err != nil {
			return nil, fmt.Errorf("reading partner CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("partner CA %s holds no PEM certificate", cfg.PartnerCA)
		}
		tc.ClientCAs = pool
		tc.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return tc, nil
}
