package pki_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"testing"
	"time"

	"github.com/antaca/antaca/api/pki"
)

func mustCA(t *testing.T, cn string) (certPEM, keyPEM []byte) {
	t.Helper()
	c, k, err := pki.NewCA(cn, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return c, k
}

func pool(t *testing.T, certPEM []byte) *x509.CertPool {
	t.Helper()
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(certPEM) {
		t.Fatal("CA PEM not accepted")
	}
	return p
}

func TestSignCSR(t *testing.T) {
	caCert, caKey := mustCA(t, "Antaca partner CA")
	_, csr, err := pki.NewKeyAndCSR("acme-bank")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := pki.SignCSR(caCert, caKey, csr, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := pki.ParseCertificate(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cert.Subject.CommonName, "acme-bank"; got != want {
		t.Errorf("CN = %q, want %q", got, want)
	}
	if cert.IsCA {
		t.Error("partner certificate is a CA")
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool(t, caCert), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("verifying as client certificate: %v", err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool(t, caCert), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
		t.Error("partner certificate verifies as a server certificate")
	}
	otherCA, _ := mustCA(t, "other")
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool(t, otherCA), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Error("partner certificate verifies under another CA")
	}
	caParsed, _ := pki.ParseCertificate(caCert)
	if cert.NotAfter.After(caParsed.NotAfter) {
		t.Errorf("certificate outlives its CA: %v > %v", cert.NotAfter, caParsed.NotAfter)
	}
}

func TestSignCSRRSAKey(t *testing.T) {
	caCert, caKey := mustCA(t, "ca")
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "p1", Organization: []string{"ignored"}}}, key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := pki.SignCSR(caCert, caKey, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := pki.ParseCertificate(certPEM)
	if len(cert.Subject.Organization) != 0 {
		t.Errorf("subject copied beyond the CN: %v", cert.Subject)
	}
}

func TestSignCSRRefuses(t *testing.T) {
	caCert, caKey := mustCA(t, "ca")
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csrFor := func(cn string) []byte {
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, key)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	tampered := csrFor("acme")
	tampered[len(tampered)-5] ^= 0xff // breaks the signature
	otherCert, _ := mustCA(t, "other")

	tests := []struct {
		name   string
		caCert []byte
		csr    []byte
		want   error
	}{
		{"bad signature", caCert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: tampered}), pki.ErrBadCSR},
		{"not PEM", caCert, []byte("hello"), pki.ErrBadCSR},
		{"empty CN", caCert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrFor("")}), pki.ErrInvalidPartnerID},
		{"CN with a brace", caCert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrFor("a}b")}), pki.ErrInvalidPartnerID},
		{"CA key of another CA", otherCert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrFor("acme")}), pki.ErrBadCA},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := pki.SignCSR(tt.caCert, caKey, tt.csr, time.Hour)
			if !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestServerCert(t *testing.T) {
	caCert, caKey := mustCA(t, "ca")
	certPEM, keyPEM, err := pki.NewServerCert(caCert, caKey, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := pki.ParseCertificate(certPEM)
	for _, host := range []string{"localhost", "127.0.0.1"} {
		if _, err := cert.Verify(x509.VerifyOptions{Roots: pool(t, caCert), DNSName: host}); err != nil {
			t.Errorf("verifying for %s: %v", host, err)
		}
	}
	if _, err := pki.ParseKey(keyPEM); err != nil {
		t.Errorf("server key: %v", err)
	}
}
