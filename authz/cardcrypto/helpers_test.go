package cardcrypto

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"strings"
	"sync"
	"testing"
)

// Fixed test material. The ZPK is the textbook 0123456789ABCDEF FEDCBA9876543210
// so the PIN block vectors can be checked against other implementations.
const (
	testZPKHex    = "0123456789ABCDEFFEDCBA9876543210"
	testPANKeyHex = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
	testLookupHex = "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f"
	testPINKeyHex = "404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f"
)

var (
	rsaOnce sync.Once
	rsaKey  *rsa.PrivateKey
)

// testRSAKey generates one RSA key per test binary: generation is slow
// under the race detector.
func testRSAKey(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	rsaOnce.Do(func() {
		var err error
		rsaKey, err = rsa.GenerateKey(rand.Reader, jweBits)
		if err != nil {
			panic(err)
		}
	})
	return rsaKey
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func testMaterial(t testing.TB) *material {
	return &material{
		jwe:    testRSAKey(t),
		pan:    mustHex(t, testPANKeyHex),
		lookup: mustHex(t, testLookupHex),
		pin:    mustHex(t, testPINKeyHex),
		zpk:    mustHex(t, testZPKHex),
	}
}

// testKeys returns Keys built from the fixed test material.
func testKeys(t testing.TB) *Keys {
	t.Helper()
	k, err := newKeys(testMaterial(t))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// otherKeys returns Keys whose data keys and ZPK differ from testKeys'.
func otherKeys(t testing.TB) *Keys {
	t.Helper()
	m := testMaterial(t)
	m.pan = bytes.Repeat([]byte{0x55}, dataKeyLen)
	m.lookup = bytes.Repeat([]byte{0x66}, dataKeyLen)
	m.pin = bytes.Repeat([]byte{0x77}, dataKeyLen)
	m.zpk = mustHex(t, "89ABCDEF0123456776543210FEDCBA98")
	k, err := newKeys(m)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// assertNoSecret fails when err's message contains any of the secrets.
func assertNoSecret(t *testing.T, err error, secrets ...string) {
	t.Helper()
	if err == nil {
		return
	}
	for _, s := range secrets {
		if s != "" && strings.Contains(err.Error(), s) {
			t.Errorf("error %q contains secret data", err)
		}
	}
}
