package jwe_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/antaca/antaca/api/jwe"
)

var (
	keysOnce sync.Once
	keyA     *rsa.PrivateKey
	keyB     *rsa.PrivateKey
)

func keys(t *testing.T) (*rsa.PrivateKey, *rsa.PrivateKey) {
	t.Helper()
	keysOnce.Do(func() {
		var err error
		if keyA, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if keyB, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
	})
	return keyA, keyB
}

func TestRoundTrip(t *testing.T) {
	a, _ := keys(t)
	for _, alg := range []jose.KeyAlgorithm{jwe.AlgRSAOAEP256, jwe.AlgRSAOAEP} {
		t.Run(string(alg), func(t *testing.T) {
			compact, err := jwe.Encrypt([]byte(`{"pin":"1234"}`), &a.PublicKey, alg)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Count(compact, ".") != 4 {
				t.Fatalf("not compact serialization: %q", compact)
			}
			got, err := jwe.Decrypt(compact, a)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != `{"pin":"1234"}` {
				t.Errorf("plaintext = %s", got)
			}
		})
	}
}

func TestDecryptRefuses(t *testing.T) {
	a, b := keys(t)
	encryptWith := func(alg jose.KeyAlgorithm, enc jose.ContentEncryption, key any) string {
		e, err := jose.NewEncrypter(enc, jose.Recipient{Algorithm: alg, Key: key}, nil)
		if err != nil {
			t.Fatal(err)
		}
		obj, err := e.Encrypt([]byte(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		s, err := obj.CompactSerialize()
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	good := encryptWith(jose.RSA_OAEP_256, jose.A256GCM, &a.PublicKey)
	tampered := []byte(good)
	tampered[len(tampered)-3] ^= 1

	tests := map[string]string{
		"A128GCM content encryption": encryptWith(jose.RSA_OAEP_256, jose.A128GCM, &a.PublicKey),
		"RSA1_5 key algorithm":       encryptWith(jose.RSA1_5, jose.A256GCM, &a.PublicKey),
		"dir key algorithm":          encryptWith(jose.DIRECT, jose.A256GCM, make([]byte, 32)),
		"another recipient":          encryptWith(jose.RSA_OAEP_256, jose.A256GCM, &b.PublicKey),
		"tampered tag":               string(tampered),
		"not a JWE":                  "hello",
		"empty":                      "",
	}
	for name, compact := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := jwe.Decrypt(compact, a); !errors.Is(err, jwe.ErrCantDecrypt) {
				t.Errorf("err = %v, want ErrCantDecrypt", err)
			}
		})
	}
}

func TestParsePublicKey(t *testing.T) {
	a, _ := keys(t)
	pkix, _ := x509.MarshalPKIXPublicKey(&a.PublicKey)
	pkixPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pkix})
	pkcs1PEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&a.PublicKey)})
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	smallDER, _ := x509.MarshalPKIXPublicKey(&small.PublicKey)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	encoded, err := jwe.EncodePublicKey(&a.PublicKey)
	if err != nil {
		t.Fatal(err)
	}

	ok := map[string]string{
		"EncodePublicKey":   encoded,
		"PKIX std base64":   base64.StdEncoding.EncodeToString(pkixPEM),
		"PKCS#1 url base64": base64.RawURLEncoding.EncodeToString(pkcs1PEM),
	}
	for name, h := range ok {
		t.Run(name, func(t *testing.T) {
			pub, err := jwe.ParsePublicKey(h)
			if err != nil {
				t.Fatal(err)
			}
			if !pub.Equal(&a.PublicKey) {
				t.Error("parsed a different key")
			}
		})
	}
	bad := map[string]string{
		"empty":           "",
		"not base64":      "!!!",
		"base64 not PEM":  base64.StdEncoding.EncodeToString([]byte("hello")),
		"1024-bit RSA":    base64.StdEncoding.EncodeToString(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: smallDER})),
		"EC key":          base64.StdEncoding.EncodeToString(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: ecDER})),
		"certificate PEM": base64.StdEncoding.EncodeToString(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: pkix})),
	}
	for name, h := range bad {
		t.Run(name, func(t *testing.T) {
			if _, err := jwe.ParsePublicKey(h); !errors.Is(err, jwe.ErrInvalidPublicKey) {
				t.Errorf("err = %v, want ErrInvalidPublicKey", err)
			}
		})
	}
}

func TestClientRequestAndEnvelope(t *testing.T) {
	server, client := keys(t)
	c := &jwe.Client{ServerKey: &server.PublicKey, Key: client, Alg: jwe.AlgRSAOAEP}
	req, err := c.NewRequest(context.Background(), "POST", "https://example.test/x", map[string]string{"pin": "4321"})
	if err != nil {
		t.Fatal(err)
	}
	if req.Header.Get(jwe.HeaderEncrypted) != "true" {
		t.Error("Encrypted-Request header missing")
	}
	pub, err := jwe.ParsePublicKey(req.Header.Get(jwe.HeaderPublicKey))
	if err != nil || !pub.Equal(&client.PublicKey) {
		t.Fatalf("Public-Key header does not carry the client key: %v", err)
	}
	body, _ := io.ReadAll(req.Body)
	// base64url has no quotes: the JSON field name cannot occur by chance,
	// where the 4-digit PIN could.
	if strings.Contains(string(body), `"pin"`) {
		t.Fatal("request body carries the plaintext")
	}
	plain, err := jwe.OpenEnvelope(body, server)
	if err != nil {
		t.Fatal(err)
	}
	if string(plain) != `{"pin":"4321"}` {
		t.Errorf("plaintext = %s", plain)
	}

	resp, err := jwe.SealEnvelope([]byte(`{"ok":true}`), pub)
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.DecryptResponse(resp)
	if err != nil || string(got) != `{"ok":true}` {
		t.Errorf("DecryptResponse = %s, %v", got, err)
	}

	get, err := c.NewRequest(context.Background(), "GET", "https://example.test/x", nil)
	if err != nil {
		t.Fatal(err)
	}
	if get.Body != nil && get.Body != http.NoBody {
		t.Error("GET request has a body")
	}
	for _, env := range []string{``, `[]`, `{"payload":""}`, `{"payload":1}`, `{"payload":"x"} {}`} {
		if _, err := jwe.OpenEnvelope([]byte(env), server); !errors.Is(err, jwe.ErrInvalidEnvelope) {
			t.Errorf("OpenEnvelope(%q) = %v, want ErrInvalidEnvelope", env, err)
		}
	}
}
