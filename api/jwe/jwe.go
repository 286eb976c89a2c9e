// Package jwe is the JSON Web Encryption layer of the REST API
// (api/README.md, "JWE"), for both sides: the server decrypts requests and
// encrypts responses with it, and clients (tests, the simulator, partner
// SDKs written in Go) encrypt requests and decrypt responses with Client.
//
// An encrypted request carries the headers `Encrypted-Request: true` and
// `Public-Key: base64(PEM of the client's RSA public key)`, and a body
// `{"payload": "<compact JWE>"}` encrypted to the server's key with alg
// RSA-OAEP-256 or RSA-OAEP and enc A256GCM. GET and body-less POST requests
// send only the headers. A 2xx response with a body is `{"payload":
// "<compact JWE>"}` encrypted to the client's key with RSA-OAEP-256 +
// A256GCM; errors are plain JSON.
package jwe

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	jose "github.com/go-jose/go-jose/v4"
)

// Header names of an encrypted request.
const (
	HeaderEncrypted = "Encrypted-Request"
	HeaderPublicKey = "Public-Key"
)

// Algorithms. The server accepts either key algorithm from clients and
// always answers with RSA-OAEP-256; content is always A256GCM.
const (
	AlgRSAOAEP256 = jose.RSA_OAEP_256
	AlgRSAOAEP    = jose.RSA_OAEP
	EncA256GCM    = jose.A256GCM
)

// RSA key sizes accepted for client keys.
const (
	MinKeyBits = 2048
	MaxKeyBits = 8192
)

// MaxPlaintext bounds a decrypted payload (the API's body limit).
const MaxPlaintext = 64 << 10

var (
	acceptedAlgs = []jose.KeyAlgorithm{AlgRSAOAEP256, AlgRSAOAEP}
	acceptedEncs = []jose.ContentEncryption{EncA256GCM}
)

// Errors of this package.
var (
	ErrInvalidPublicKey = errors.New("invalid public key")
	ErrCantDecrypt      = errors.New("cannot decrypt payload")
	ErrInvalidEnvelope  = errors.New(`body is not {"payload": "<compact JWE>"}`)
)

// Envelope is the body of an encrypted request or response.
type Envelope struct {
	Payload string `json:"payload"`
}

// Encrypt encrypts plaintext to pub with the key algorithm alg
// (AlgRSAOAEP256 or AlgRSAOAEP) and A256GCM, in compact serialization.
func Encrypt(plaintext []byte, pub *rsa.PublicKey, alg jose.KeyAlgorithm) (string, error) {
	enc, err := jose.NewEncrypter(EncA256GCM, jose.Recipient{Algorithm: alg, Key: pub},
		(&jose.EncrypterOptions{}).WithContentType("application/json"))
	if err != nil {
		return "", fmt.Errorf("preparing JWE: %w", err)
	}
	obj, err := enc.Encrypt(plaintext)
	if err != nil {
		return "", fmt.Errorf("encrypting JWE: %w", err)
	}
	return obj.CompactSerialize()
}

// Decrypt decrypts a compact JWE with priv. Only RSA-OAEP-256 / RSA-OAEP
// with A256GCM are accepted; anything else, a wrong key or a tampered token
// is ErrCantDecrypt.
func Decrypt(compact string, priv *rsa.PrivateKey) ([]byte, error) {
	obj, err := jose.ParseEncryptedCompact(strings.TrimSpace(compact), acceptedAlgs, acceptedEncs)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCantDecrypt, err)
	}
	if obj.Header.ExtraHeaders["zip"] != nil {
		return nil, fmt.Errorf("%w: compressed payloads are not accepted", ErrCantDecrypt)
	}
	out, err := obj.Decrypt(priv)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCantDecrypt, err)
	}
	if len(out) > MaxPlaintext {
		return nil, fmt.Errorf("%w: plaintext over %d bytes", ErrCantDecrypt, MaxPlaintext)
	}
	return out, nil
}

// EncodePublicKey returns the Public-Key header value for pub: standard
// base64 of its PKIX PEM.
func EncodePublicKey(pub *rsa.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("encoding public key: %w", err)
	}
	return base64.StdEncoding.EncodeToString(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), nil
}

// ParsePublicKey parses a Public-Key header: base64 (standard or URL
// alphabet, padded or not) of a PEM "PUBLIC KEY" (PKIX) or "RSA PUBLIC KEY"
// (PKCS#1) holding an RSA key of MinKeyBits to MaxKeyBits bits.
func ParsePublicKey(header string) (*rsa.PublicKey, error) {
	header = strings.TrimSpace(header)
	if header == "" {
		return nil, fmt.Errorf("%w: header is empty", ErrInvalidPublicKey)
	}
	var raw []byte
	var err error
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if raw, err = enc.DecodeString(header); err == nil {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%w: not base64", ErrInvalidPublicKey)
	}
	return ParsePublicKeyPEM(raw)
}

// ParsePublicKeyPEM parses an RSA public key PEM (PKIX or PKCS#1), such as
// the server's at GET /public-key.
func ParsePublicKeyPEM(b []byte) (*rsa.PublicKey, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("%w: not PEM", ErrInvalidPublicKey)
	}
	var pub any
	var err error
	switch block.Type {
	case "PUBLIC KEY":
		pub, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
	default:
		return nil, fmt.Errorf("%w: PEM block %q is not a public key", ErrInvalidPublicKey, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidPublicKey, err)
	}
	rsaPub, ok := pub.(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%w: %T is not an RSA key", ErrInvalidPublicKey, pub)
	}
	if n := rsaPub.N.BitLen(); n < MinKeyBits || n > MaxKeyBits {
		return nil, fmt.Errorf("%w: RSA key of %d bits, %d to %d accepted", ErrInvalidPublicKey, n, MinKeyBits, MaxKeyBits)
	}
	return rsaPub, nil
}

// OpenEnvelope reads {"payload": "..."} from body and decrypts it.
func OpenEnvelope(body []byte, priv *rsa.PrivateKey) ([]byte, error) {
	var env Envelope
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&env); err != nil || env.Payload == "" || dec.More() {
		return nil, ErrInvalidEnvelope
	}
	return Decrypt(env.Payload, priv)
}

// SealEnvelope encrypts plaintext to pub (RSA-OAEP-256 + A256GCM) and
// returns the JSON body {"payload": "..."}.
func SealEnvelope(plaintext []byte, pub *rsa.PublicKey) ([]byte, error) {
	compact, err := Encrypt(plaintext, pub, AlgRSAOAEP256)
	if err != nil {
		return nil, err
	}
	return json.Marshal(Envelope{Payload: compact})
}

// Client encrypts requests to the server and decrypts its responses.
type Client struct {
	// ServerKey is the server's JWE public key (GET /public-key).
	ServerKey *rsa.PublicKey
	// Key is the client's own RSA key; its public half travels in Public-Key.
	Key *rsa.PrivateKey
	// Alg is the key algorithm for requests (AlgRSAOAEP256 when empty).
	Alg jose.KeyAlgorithm
}

// NewRequest builds an encrypted request: the two headers, and when body is
// not nil, {"payload": JWE(json(body))}. A []byte body is sent as it is
// (already JSON).
func (c *Client) NewRequest(ctx context.Context, method, url string, body any) (*http.Request, error) {
	pubHeader, err := EncodePublicKey(&c.Key.PublicKey)
	if err != nil {
		return nil, err
	}
	var rd io.Reader
	if body != nil {
		plain, ok := body.([]byte)
		if !ok {
			if plain, err = json.Marshal(body); err != nil {
				return nil, fmt.Errorf("encoding request body: %w", err)
			}
		}
		alg := c.Alg
		if alg == "" {
			alg = AlgRSAOAEP256
		}
		compact, err := Encrypt(plain, c.ServerKey, alg)
		if err != nil {
			return nil, err
		}
		env, _ := json.Marshal(Envelope{Payload: compact})
		rd = bytes.NewReader(env)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set(HeaderEncrypted, "true")
	req.Header.Set(HeaderPublicKey, pubHeader)
	return req, nil
}

// DecryptResponse opens an encrypted response body with the client's key.
func (c *Client) DecryptResponse(body []byte) ([]byte, error) {
	return OpenEnvelope(body, c.Key)
}
