// Package pki is the small certificate authority behind the server-to-server
// channel (/secure/...): it creates a partner CA, signs the CSRs partners send
// (the certificate's Subject CN is the partner id), and creates a server
// certificate for local tests and demos. `antaca ca init|sign|server-cert`
// exposes it.
//
// Keys are ECDSA P-256 (CA, server) stored as PKCS#8 PEM ("PRIVATE KEY");
// partners may send CSRs for RSA (2048 bits or more) or ECDSA keys.
// Certificates carry a random 128-bit serial. A signed partner certificate
// only has the CSR's CN as subject and the client-auth key usage: nothing
// else the CSR asks for (SANs, extensions, CA flag) is copied.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"regexp"
	"time"
)

// Errors callers branch on.
var (
	ErrBadCSR           = errors.New("invalid certificate signing request")
	ErrBadCA            = errors.New("invalid CA certificate or key")
	ErrInvalidPartnerID = errors.New("common name is not a valid partner id")
)

// partnerIDRE is what a partner id looks like: it is a certificate CN, a
// Redis hash tag part and a URL path segment, so no braces, slashes or spaces.
var partnerIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// ValidPartnerID reports whether id may name a partner (and so be the CN of
// a partner certificate).
func ValidPartnerID(id string) bool { return partnerIDRE.MatchString(id) }

// backdate absorbs clock skew between the CA and the servers checking its certificates.
const backdate = 5 * time.Minute

// NewCA creates a CA key and its self-signed certificate, both PEM.
func NewCA(commonName string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	if commonName == "" {
		return nil, nil, errors.New("creating CA: empty common name")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("creating CA key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"Antaca"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("creating CA certificate: %w", err)
	}
	keyPEM, err = EncodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pemBlock("CERTIFICATE", der), keyPEM, nil
}

// SignCSR signs a partner's CSR with the CA: a client-authentication
// certificate whose Subject CN is the CSR's CN, the partner id. CSRs with a
// bad signature, a CN that is not a valid partner id or a weak key are
// refused (ErrBadCSR, ErrInvalidPartnerID). The certificate never outlives
// the CA.
func SignCSR(caCertPEM, caKeyPEM, csrPEM []byte, validity time.Duration) ([]byte, error) {
	caCert, caKey, err := loadCA(caCertPEM, caKeyPEM)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(csrPEM)
	if block == nil || block.Type != "CERTIFICATE REQUEST" && block.Type != "NEW CERTIFICATE REQUEST" {
		return nil, fmt.Errorf("%w: no CERTIFICATE REQUEST PEM block", ErrBadCSR)
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadCSR, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: signature: %v", ErrBadCSR, err)
	}
	if !ValidPartnerID(csr.Subject.CommonName) {
		return nil, fmt.Errorf("%w: %q", ErrInvalidPartnerID, csr.Subject.CommonName)
	}
	if err := checkKey(csr.PublicKey); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadCSR, err)
	}
	usage := x509.KeyUsageDigitalSignature
	if _, ok := csr.PublicKey.(*rsa.PublicKey); ok {
		usage |= x509.KeyUsageKeyEncipherment
	}
	return issue(caCert, caKey, &x509.Certificate{
		Subject:     pkix.Name{CommonName: csr.Subject.CommonName},
		KeyUsage:    usage,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, csr.PublicKey, validity)
}

// NewKeyAndCSR creates what a partner sends to be signed: an ECDSA P-256
// key (PKCS#8 PEM) and a CSR with Subject CN = partnerID.
func NewKeyAndCSR(partnerID string) (keyPEM, csrPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("creating key: %w", err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: partnerID},
	}, key)
	if err != nil {
		return nil, nil, fmt.Errorf("creating CSR: %w", err)
	}
	keyPEM, err = EncodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return keyPEM, pemBlock("CERTIFICATE REQUEST", der), nil
}

// NewServerCert creates a TLS server key and certificate signed by the CA
// for hosts (DNS names or IP addresses; "localhost", "127.0.0.1" and "::1"
// when empty).
func NewServerCert(caCertPEM, caKeyPEM []byte, hosts []string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	caCert, caKey, err := loadCA(caCertPEM, caKeyPEM)
	if err != nil {
		return nil, nil, err
	}
	if len(hosts) == 0 {
		hosts = []string{"localhost", "127.0.0.1", "::1"}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("creating server key: %w", err)
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: hosts[0]},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	certPEM, err = issue(caCert, caKey, tmpl, &key.PublicKey, validity)
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err = EncodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return certPEM, keyPEM, nil
}

func issue(caCert *x509.Certificate, caKey crypto.Signer, tmpl *x509.Certificate, pub any, validity time.Duration) ([]byte, error) {
	if validity <= 0 {
		return nil, errors.New("issuing certificate: validity must be positive")
	}
	now := time.Now()
	tmpl.SerialNumber = serial()
	tmpl.NotBefore = now.Add(-backdate)
	tmpl.NotAfter = now.Add(validity)
	if tmpl.NotAfter.After(caCert.NotAfter) {
		tmpl.NotAfter = caCert.NotAfter
	}
	tmpl.BasicConstraintsValid = true
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, pub, caKey)
	if err != nil {
		return nil, fmt.Errorf("issuing certificate: %w", err)
	}
	return pemBlock("CERTIFICATE", der), nil
}

// loadCA parses the CA certificate and key and checks they belong together.
func loadCA(certPEM, keyPEM []byte) (*x509.Certificate, crypto.Signer, error) {
	cert, err := ParseCertificate(certPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrBadCA, err)
	}
	if !cert.IsCA {
		return nil, nil, fmt.Errorf("%w: certificate is not a CA", ErrBadCA)
	}
	key, err := ParseKey(keyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrBadCA, err)
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, nil, fmt.Errorf("%w: key does not match certificate", ErrBadCA)
	}
	return cert, key, nil
}

// ParseCertificate parses the first CERTIFICATE block of a PEM file.
func ParseCertificate(certPEM []byte) (*x509.Certificate, error) {
	for rest := certPEM; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New("no CERTIFICATE PEM block")
		}
		if block.Type == "CERTIFICATE" {
			return x509.ParseCertificate(block.Bytes)
		}
	}
}

// ParseKey parses a private key PEM: PKCS#8 ("PRIVATE KEY"), SEC 1 ("EC
// PRIVATE KEY") or PKCS#1 ("RSA PRIVATE KEY").
func ParseKey(keyPEM []byte) (crypto.Signer, error) {
	for rest := keyPEM; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New("no private key PEM block")
		}
		var (
			k   any
			err error
		)
		switch block.Type {
		case "PRIVATE KEY":
			k, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			k, err = x509.ParseECPrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			k, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("parsing private key: %w", err)
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("unsupported private key type %T", k)
		}
		return s, nil
	}
}

// EncodeKey returns a private key as PKCS#8 PEM.
func EncodeKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encoding private key: %w", err)
	}
	return pemBlock("PRIVATE KEY", der), nil
}

func checkKey(pub any) error {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return fmt.Errorf("RSA key of %d bits, 2048 or more required", k.N.BitLen())
		}
	case *ecdsa.PublicKey, ed25519.PublicKey:
	default:
		return fmt.Errorf("unsupported key type %T", pub)
	}
	return nil
}

func serial() *big.Int {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[0] &= 0x7f // positive
	b[0] |= 0x40 // and 128 bits long, never a short or zero serial
	return new(big.Int).SetBytes(b)
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}
