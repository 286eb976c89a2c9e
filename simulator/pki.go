package simulator

import (
	"crypto/x509"
	"fmt"
	"os"
	"time"

	"github.com/antaca/antaca/api/pki"
)

// CA is a certificate authority the simulator can sign with: the partner CA
// of a test environment, so that `sim seed` can give every program it
// creates the client certificate the /secure channel requires (Subject CN =
// partner id). It does what a partner and the platform do in production
// with api/pki: the partner makes a key and CSR, the CA signs it.
type CA struct {
	certPEM, keyPEM []byte
	cert            *x509.Certificate
}

// certValidity is how long the certificates the simulator issues last.
const certValidity = 90 * 24 * time.Hour

func newCA(certPEM, keyPEM []byte) (*CA, error) {
	cert, err := pki.ParseCertificate(certPEM)
	if err != nil {
		return nil, fmt.Errorf("parsing CA certificate: %w", err)
	}
	if _, err := pki.ParseKey(keyPEM); err != nil {
		return nil, fmt.Errorf("parsing CA key: %w", err)
	}
	return &CA{certPEM: certPEM, keyPEM: keyPEM, cert: cert}, nil
}

// LoadCA reads a CA certificate and its private key from PEM files.
func LoadCA(certFile, keyFile string) (*CA, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("loading CA: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("loading CA: %w", err)
	}
	return newCA(certPEM, keyPEM)
}

// NewCA creates a self-signed CA valid for a year.
func NewCA(commonName string) (*CA, error) {
	certPEM, keyPEM, err := pki.NewCA(commonName, 365*24*time.Hour)
	if err != nil {
		return nil, err
	}
	return newCA(certPEM, keyPEM)
}

// CertPEM is the CA certificate as PEM.
func (ca *CA) CertPEM() []byte { return ca.certPEM }

// KeyPEM is the CA key as PEM.
func (ca *CA) KeyPEM() ([]byte, error) { return ca.keyPEM, nil }

// Pool is a certificate pool holding only this CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// IssueClient makes a partner key and CSR with Subject CN commonName (the
// partner id), signs it, and returns certificate and key as PEM.
func (ca *CA) IssueClient(commonName string) (certPEM, keyPEM []byte, err error) {
	keyPEM, csrPEM, err := pki.NewKeyAndCSR(commonName)
	if err != nil {
		return nil, nil, err
	}
	certPEM, err = pki.SignCSR(ca.certPEM, ca.keyPEM, csrPEM, certValidity)
	if err != nil {
		return nil, nil, err
	}
	return certPEM, keyPEM, nil
}

// IssueServer signs a server certificate for hosts (names or IP addresses).
func (ca *CA) IssueServer(hosts ...string) (certPEM, keyPEM []byte, err error) {
	return pki.NewServerCert(ca.certPEM, ca.keyPEM, hosts, certValidity)
}

// WriteFiles writes the CA certificate and key to certFile and keyFile (key 0600).
func (ca *CA) WriteFiles(certFile, keyFile string) error {
	if err := os.WriteFile(certFile, ca.certPEM, 0o644); err != nil {
		return err
	}
	return os.WriteFile(keyFile, ca.keyPEM, 0o600)
}
