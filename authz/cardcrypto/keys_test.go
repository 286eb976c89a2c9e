package cardcrypto

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

func readDir(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := make(map[string][]byte)
	for _, name := range keyFiles {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		files[name] = b
	}
	return files
}

// sameKeys checks that two Keys hold the same material by using it.
func sameKeys(t *testing.T, a, b *Keys) {
	t.Helper()
	const pan = "4123456789012345"
	ct, err := a.EncryptPAN(pan)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := b.DecryptPAN(ct); err != nil || got != pan {
		t.Errorf("PAN encrypted by one does not decrypt with the other: %v", err)
	}
	if a.LookupToken(pan) != b.LookupToken(pan) {
		t.Error("lookup tokens differ")
	}
	if a.PINVerifier(pan, "1234") != b.PINVerifier(pan, "1234") {
		t.Error("PIN verifiers differ")
	}
	block, _ := a.EncodePINBlock("1234", pan)
	if pin, err := b.DecodePINBlock(block, pan); err != nil || pin != "1234" {
		t.Errorf("PIN block from one does not decode with the other: %v", err)
	}
	if !a.JWEPrivateKey().Equal(b.JWEPrivateKey()) || !bytes.Equal(a.JWEPublicKeyPEM(), b.JWEPublicKeyPEM()) {
		t.Error("JWE keys differ")
	}
	if a.ZPKCheckValue() != b.ZPKCheckValue() || a.DataKeysID() != b.DataKeysID() || a.JWEKeyID() != b.JWEKeyID() {
		t.Error("check values differ")
	}
}

func TestLoadOrCreateEmptyDirThenReload(t *testing.T) {
	dir := t.TempDir()
	k1, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(keyFiles) {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("directory holds %v, want exactly the %d key files (no temporaries)", names, len(keyFiles))
	}
	for _, name := range keyFiles {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if runtime.GOOS != "windows" && fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode = %v, want 0600", name, fi.Mode().Perm())
		}
	}
	files := readDir(t, dir)

	k2, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	sameKeys(t, k1, k2)
	for name, b := range readDir(t, dir) {
		if !bytes.Equal(b, files[name]) {
			t.Errorf("%s changed on reload", name)
		}
	}
	if otherKeys(t).DataKeysID() == k1.DataKeysID() {
		t.Error("DataKeysID does not depend on the keys")
	}
}

func TestLoadOrCreateMissingDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "keys")
	if _, err := LoadOrCreate(dir); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm() != 0o700 {
		t.Errorf("directory mode = %v, want 0700", fi.Mode().Perm())
	}
}

func TestLoadOrCreateFileFormats(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadOrCreate(dir); err != nil {
		t.Fatal(err)
	}
	files := readDir(t, dir)

	block, rest := pem.Decode(files[FileJWE])
	if block == nil || block.Type != "PRIVATE KEY" || len(bytes.TrimSpace(rest)) != 0 {
		t.Fatalf("jwe.pem is not a single PKCS#8 PEM block")
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if rk, ok := key.(*rsa.PrivateKey); !ok || rk.N.BitLen() != 2048 {
		t.Errorf("jwe.pem holds %T, want an RSA 2048 key", key)
	}
	for name, n := range map[string]int{FilePAN: 32, FileLookup: 32, FilePIN: 32, FileZPK: 16} {
		raw, err := hex.DecodeString(strings.TrimSpace(string(files[name])))
		if err != nil || len(raw) != n {
			t.Errorf("%s: %d bytes, err %v; want %d hex-encoded", name, len(raw), err, n)
		}
		if name == FileZPK {
			for _, b := range raw {
				if b != oddParity(b) {
					t.Errorf("zpk.key byte %#x lacks odd parity", b)
				}
			}
			if bytes.Equal(raw[:8], raw[8:]) {
				t.Error("zpk.key halves are equal")
			}
		}
	}
	if bytes.Equal(files[FilePAN], files[FileLookup]) || bytes.Equal(files[FileLookup], files[FilePIN]) {
		t.Error("data keys are not independent")
	}
}

func TestLoadOrCreatePartialDirFails(t *testing.T) {
	for _, missing := range keyFiles {
		t.Run(missing, func(t *testing.T) {
			dir := t.TempDir()
			if _, err := LoadOrCreate(dir); err != nil {
				t.Fatal(err)
			}
			before := readDir(t, dir)
			if err := os.Remove(filepath.Join(dir, missing)); err != nil {
				t.Fatal(err)
			}
			_, err := LoadOrCreate(dir)
			if !errors.Is(err, ErrIncompleteKeys) {
				t.Fatalf("err = %v, want ErrIncompleteKeys", err)
			}
			if !strings.Contains(err.Error(), missing) {
				t.Errorf("error does not name %s: %v", missing, err)
			}
			if _, serr := os.Stat(filepath.Join(dir, missing)); !os.IsNotExist(serr) {
				t.Errorf("%s was regenerated", missing)
			}
			for name, b := range before {
				if name == missing {
					continue
				}
				got, _ := os.ReadFile(filepath.Join(dir, name))
				if !bytes.Equal(got, b) {
					t.Errorf("%s changed", name)
				}
				assertNoSecret(t, err, strings.TrimSpace(string(b)))
			}
		})
	}
}

func TestLoadOrCreateWaitsForCreatorInProgress(t *testing.T) {
	dir := t.TempDir()
	k1, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	// Stage the state another process leaves mid-creation: some files
	// linked, its temporaries still there.
	final := filepath.Join(dir, FilePAN)
	temp := filepath.Join(dir, tempPrefix(FilePAN)+"other")
	if err := os.Rename(final, temp); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		time.Sleep(100 * time.Millisecond)
		err := os.Link(temp, final)
		if err == nil {
			err = os.Remove(temp)
		}
		done <- err
	}()
	k2, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatalf("LoadOrCreate during another's creation: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	sameKeys(t, k1, k2)
}

func TestLoadOrCreateIgnoresUnrelatedFiles(t *testing.T) {
	// A volume may carry lost+found or a README: still "empty" of keys.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "README"), []byte("keys"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreate(dir); err != nil {
		t.Fatal(err)
	}
}

func TestLoadRejectsCorruptFilesWithoutQuotingThem(t *testing.T) {
	cases := map[string]string{
		FilePAN:    strings.Repeat("zz", 32),           // not hex
		FileLookup: strings.Repeat("ab", 31),           // too short
		FilePIN:    strings.Repeat("ab", 33),           // too long
		FileZPK:    "0123456789ABCDEF0123456789ABCDEF", // equal halves
		FileJWE:    "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n",
	}
	for name, content := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if _, err := LoadOrCreate(dir); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := LoadOrCreate(dir)
			if err == nil || !strings.Contains(err.Error(), name) {
				t.Fatalf("err = %v, want an error naming %s", err, name)
			}
			assertNoSecret(t, err, "zz", "abab", "0123456789ABCDEF", "AAAA")
		})
	}
	// White space around hex keys is tolerated (editors add newlines).
	dir := t.TempDir()
	if _, err := LoadOrCreate(dir); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, FilePAN)
	b, _ := os.ReadFile(p)
	if err := os.WriteFile(p, []byte("  "+strings.TrimSpace(string(b))+"\r\n\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreate(dir); err != nil {
		t.Errorf("hex key with surrounding white space: %v", err)
	}
}

func TestLoadRejectsSmallOrNonRSAJWEKey(t *testing.T) {
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Skip("cannot generate a 1024-bit key here:", err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(small)
	if _, err := parseJWEKey(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})); err == nil {
		t.Error("1024-bit JWE key accepted")
	}
	pkcs1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(testRSAKey(t))})
	if _, err := parseJWEKey(pkcs1); err == nil {
		t.Error("PKCS#1 PEM accepted")
	}
}

func TestLoadOrCreateConcurrentFirstStart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	const n = 4
	keys := make([]*Keys, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { keys[i], errs[i] = LoadOrCreate(dir) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("LoadOrCreate %d: %v", i, errs[i])
		}
	}
	for i := 1; i < n; i++ {
		sameKeys(t, keys[0], keys[i])
	}
	disk, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	sameKeys(t, keys[0], disk)
	entries, _ := os.ReadDir(dir)
	if len(entries) != len(keyFiles) {
		t.Errorf("directory holds %d entries after concurrent start, want %d", len(entries), len(keyFiles))
	}
}

func TestLoadOrCreateEmptyName(t *testing.T) {
	if _, err := LoadOrCreate(""); err == nil {
		t.Error("empty directory name accepted")
	}
}

func TestJWEAccessors(t *testing.T) {
	k := testKeys(t)
	block, _ := pem.Decode(k.JWEPublicKeyPEM())
	if block == nil || block.Type != "PUBLIC KEY" {
		t.Fatal("JWEPublicKeyPEM is not a PKIX PEM block")
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !k.JWEPrivateKey().PublicKey.Equal(pub) {
		t.Error("public PEM does not match the private key")
	}
	// The PEM is a copy: callers cannot corrupt the server's.
	p := k.JWEPublicKeyPEM()
	p[0] = 'X'
	if k.JWEPublicKeyPEM()[0] == 'X' {
		t.Error("JWEPublicKeyPEM returns the internal slice")
	}

	// The key id is the RFC 7638 thumbprint, as go-jose computes it.
	jwk := jose.JSONWebKey{Key: &k.JWEPrivateKey().PublicKey}
	tp, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if want := base64.RawURLEncoding.EncodeToString(tp); k.JWEKeyID() != want {
		t.Errorf("JWEKeyID = %s, want %s", k.JWEKeyID(), want)
	}
}

func TestKeysNeverPrinted(t *testing.T) {
	dir := t.TempDir()
	k, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	var logBuf bytes.Buffer
	slog.New(slog.NewJSONHandler(&logBuf, nil)).Info("keys", "keys", k, "deref", *k)
	slog.New(slog.NewTextHandler(&logBuf, nil)).Info("keys", "keys", k)
	out := fmt.Sprintf("%v %+v %#v %s %x %q %v %+v %#v", k, k, k, k, k, k, *k, *k, *k) +
		logBuf.String() + k.String() + k.GoString()

	secrets := []string{k.JWEPrivateKey().D.String(), k.JWEPrivateKey().D.Text(16)}
	for name, b := range readDir(t, dir) {
		if name != FileJWE {
			s := strings.TrimSpace(string(b))
			secrets = append(secrets, s, strings.ToUpper(s), s[:16])
		}
	}
	for _, s := range secrets {
		if strings.Contains(out, s) {
			t.Fatalf("printed Keys contain key material")
		}
	}
	if !strings.Contains(out, "REDACTED") {
		t.Errorf("unexpected rendering: %s", out)
	}
}

func TestConcurrentUse(t *testing.T) {
	k := testKeys(t)
	const pan = "4123456789012345"
	block, _ := k.EncodePINBlock("1234", pan)
	token := k.LookupToken(pan)
	verifier := k.PINVerifier(pan, "1234")
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 200 {
				if k.LookupToken(pan) != token {
					t.Error("token changed")
					return
				}
				if pin, err := k.DecodePINBlock(block, pan); err != nil || pin != "1234" {
					t.Error("decode failed")
					return
				}
				if ok, err := k.VerifyPINBlock(block, pan, verifier); !ok || err != nil {
					t.Error("verify failed")
					return
				}
				ct, err := k.EncryptPAN(pan)
				if err != nil {
					t.Error(err)
					return
				}
				if got, err := k.DecryptPAN(ct); err != nil || got != pan {
					t.Error("round trip failed")
					return
				}
			}
		})
	}
	wg.Wait()
}

func Example() {
	dir, err := os.MkdirTemp("", "antaca-keys-")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)

	keys, err := LoadOrCreate(dir) // first start: fresh keys
	if err != nil {
		fmt.Println(err)
		return
	}
	pan, _ := GeneratePAN("412345", 16, nil)
	stored, _ := keys.EncryptPAN(pan)
	token := keys.LookupToken(pan) // what the store indexes
	back, _ := keys.DecryptPAN(stored)
	fmt.Println(back == pan, len(token), len(Mask(pan)))

	block, _ := keys.EncodePINBlock("1234", pan) // DE52, as the simulator sends it
	ok, _ := keys.VerifyPINBlock(block, pan, keys.PINVerifier(pan, "1234"))
	fmt.Println(len(block), ok)
	// Output:
	// true 64 16
	// 8 true
}
