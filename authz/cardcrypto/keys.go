package cardcrypto

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"hash"
	"io/fs"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Names of the files in the keys directory (see the package documentation).
const (
	FileJWE    = "jwe.pem"
	FilePAN    = "pan.key"
	FileLookup = "lookup.key"
	FilePIN    = "pin.key"
	FileZPK    = "zpk.key"
)

// keyFiles is the fixed order files are created and checked in. Creation
// links FileJWE first: whoever links it owns the directory's initialisation.
var keyFiles = [...]string{FileJWE, FilePAN, FileLookup, FilePIN, FileZPK}

// Key sizes in bytes.
const (
	jweBits    = 2048
	dataKeyLen = 32 // pan.key (AES-256), lookup.key and pin.key (HMAC-SHA256)
	zpkLen     = 16 // double-length 3DES
)

// ErrIncompleteKeys is returned by LoadOrCreate when the keys directory holds
// some but not all key files. It is never repaired automatically: a fresh
// data key would make what is stored under the old one unreadable.
var ErrIncompleteKeys = errors.New("cardcrypto: keys directory is incomplete")

// concurrentInitWait bounds how long LoadOrCreate waits for another process
// that is initialising the same directory to finish linking its files.
const concurrentInitWait = 10 * time.Second

// Keys is the server's key material. Obtain it from LoadOrCreate. It is
// immutable and safe for concurrent use. Its fmt, %#v and slog forms are
// redacted, so an accidental log line cannot leak a key.
type Keys struct {
	jwe       *rsa.PrivateKey
	jwePubPEM []byte
	jweKID    string

	data   cipher.AEAD // AES-256-GCM with random nonces, under pan.key
	lookup *macPool    // HMAC-SHA256 under lookup.key
	pin    *macPool    // HMAC-SHA256 under pin.key
	zpk    cipher.Block

	zpkKCV     string
	dataKeysID string
}

// material is the raw key material, as generated or read from disk.
type material struct {
	jwe                   *rsa.PrivateKey
	pan, lookup, pin, zpk []byte
}

// LoadOrCreate returns the keys stored in dir. When dir does not exist, or
// holds none of the key files, it is created (0700) and filled with fresh
// random keys (files 0600). When only some of the files exist it fails with
// ErrIncompleteKeys naming the missing ones, and writes nothing; it first
// waits (up to 10s) if another process is visibly creating them.
func LoadOrCreate(dir string) (*Keys, error) {
	if dir == "" {
		return nil, errors.New("cardcrypto: keys directory not configured (ANTACA_KEYS_DIR)")
	}
	present, missing, err := scan(dir)
	if err != nil {
		return nil, err
	}
	switch {
	case len(missing) == 0:
		return load(dir)
	case len(present) > 0:
		return loadPartial(dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("cardcrypto: create keys directory: %w", err)
	}
	k, err := create(dir)
	if errors.Is(err, errLostRace) {
		return waitAndLoad(dir)
	}
	return k, err
}

func incompleteError(dir string, present, missing []string) error {
	return fmt.Errorf("%w: %s has %s but lacks %s; refusing to generate new keys, "+
		"because data stored under the existing ones would become unreadable: "+
		"restore the missing files from backup (only if the directory was never used, "+
		"for example the first start was interrupted, empty it to start afresh)",
		ErrIncompleteKeys, dir, strings.Join(present, ", "), strings.Join(missing, ", "))
}

// scan reports which key files exist in dir. A missing dir has none.
func scan(dir string) (present, missing []string, err error) {
	for _, name := range keyFiles {
		fi, err := os.Stat(filepath.Join(dir, name))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			missing = append(missing, name)
		case err != nil:
			return nil, nil, fmt.Errorf("cardcrypto: keys directory: %w", err)
		case !fi.Mode().IsRegular():
			return nil, nil, fmt.Errorf("cardcrypto: %s in %s is not a regular file", name, dir)
		default:
			present = append(present, name)
		}
	}
	return present, missing, nil
}

// loadPartial handles a scan that found some key files but not all. That is
// either a broken directory or a torn view of another process linking its
// fresh files right now. Creators keep their temporary files until every
// link is made, so: temporaries present means wait; none present and still
// incomplete on a second look (made after checking for temporaries, so a
// creator that finished meanwhile is seen complete) means broken.
func loadPartial(dir string) (*Keys, error) {
	inProgress, err := creationInProgress(dir)
	if err != nil {
		return nil, err
	}
	present, missing, err := scan(dir)
	switch {
	case err != nil:
		return nil, err
	case len(missing) == 0:
		return load(dir)
	case inProgress:
		return waitAndLoad(dir)
	}
	return nil, incompleteError(dir, present, missing)
}

// creationInProgress reports whether dir holds a creator's temporary files
// (or a crashed creator's leftovers, which cost a wait before the error).
func creationInProgress(dir string) (bool, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false, fmt.Errorf("cardcrypto: keys directory: %w", err)
	}
	for _, e := range entries {
		for _, name := range keyFiles {
			if strings.HasPrefix(e.Name(), tempPrefix(name)) {
				return true, nil
			}
		}
	}
	return false, nil
}

func tempPrefix(name string) string { return "." + name + ".tmp-" }

// waitAndLoad loads a directory another process is initialising. Files
// appear complete (they are linked after being written and synced), so the
// only thing to wait for is the rest of them.
func waitAndLoad(dir string) (*Keys, error) {
	deadline := time.Now().Add(concurrentInitWait)
	for {
		present, missing, err := scan(dir)
		if err != nil {
			return nil, err
		}
		if len(missing) == 0 {
			return load(dir)
		}
		if time.Now().After(deadline) {
			return nil, incompleteError(dir, present, missing)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// load reads and validates every key file. Errors name the file, never its
// content.
func load(dir string) (*Keys, error) {
	var m material
	read := func(name string) ([]byte, error) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("cardcrypto: read %s: %w", name, err)
		}
		return b, nil
	}

	b, err := read(FileJWE)
	if err != nil {
		return nil, err
	}
	if m.jwe, err = parseJWEKey(b); err != nil {
		return nil, fmt.Errorf("cardcrypto: %s: %w", FileJWE, err)
	}
	for _, f := range []struct {
		name string
		dst  *[]byte
		n    int
	}{
		{FilePAN, &m.pan, dataKeyLen},
		{FileLookup, &m.lookup, dataKeyLen},
		{FilePIN, &m.pin, dataKeyLen},
		{FileZPK, &m.zpk, zpkLen},
	} {
		b, err := read(f.name)
		if err != nil {
			return nil, err
		}
		if *f.dst, err = parseHexKey(b, f.n); err != nil {
			return nil, fmt.Errorf("cardcrypto: %s: %w", f.name, err)
		}
	}
	if bytes.Equal(m.zpk[:8], m.zpk[8:]) {
		return nil, fmt.Errorf("cardcrypto: %s: halves are equal, which is single DES", FileZPK)
	}
	return newKeys(&m)
}

func parseJWEKey(b []byte) (*rsa.PrivateKey, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, errors.New(`want a PKCS#8 PEM block of type "PRIVATE KEY"`)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse PKCS#8: %w", err)
	}
	rk, ok := key.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("want an RSA key, got %T", key)
	}
	if rk.N.BitLen() < jweBits {
		return nil, fmt.Errorf("RSA key has %d bits, want at least %d", rk.N.BitLen(), jweBits)
	}
	if err := rk.Validate(); err != nil {
		return nil, fmt.Errorf("invalid RSA key: %w", err)
	}
	return rk, nil
}

// parseHexKey decodes a hex key of exactly n bytes. The hex package's own
// errors quote the offending character, which is key material, so they are
// replaced.
func parseHexKey(b []byte, n int) ([]byte, error) {
	s := bytes.TrimSpace(b)
	if len(s) != 2*n {
		return nil, fmt.Errorf("want %d hex digits (%d bytes), got %d characters", 2*n, n, len(s))
	}
	key := make([]byte, n)
	if _, err := hex.Decode(key, s); err != nil {
		return nil, errors.New("not valid hex")
	}
	return key, nil
}

// errLostRace reports that another process linked the first key file while
// this one was creating its own.
var errLostRace = errors.New("cardcrypto: keys directory initialised concurrently")

// create generates fresh keys and installs them in dir without overwriting
// anything.
func create(dir string) (*Keys, error) {
	m, err := generate()
	if err != nil {
		return nil, err
	}
	k, err := newKeys(m)
	if err != nil {
		return nil, err
	}
	files, err := m.encode()
	if err != nil {
		return nil, err
	}

	tmp := make(map[string]string, len(keyFiles))
	defer func() {
		for _, p := range tmp {
			_ = os.Remove(p)
		}
	}()
	for _, name := range keyFiles {
		p, err := writeTemp(dir, name, files[name])
		if err != nil {
			return nil, err
		}
		tmp[name] = p
	}
	for i, name := range keyFiles {
		err := linkNoClobber(tmp[name], filepath.Join(dir, name))
		if i == 0 && errors.Is(err, fs.ErrExist) {
			return nil, errLostRace
		}
		if err != nil {
			return nil, fmt.Errorf("cardcrypto: install %s: %w", name, err)
		}
	}
	if err := syncDir(dir); err != nil {
		return nil, err
	}
	return k, nil
}

// writeTemp writes data to a new 0600 file next to name and syncs it.
func writeTemp(dir, name string, data []byte) (string, error) {
	f, err := os.CreateTemp(dir, tempPrefix(name)+"*")
	if err != nil {
		return "", fmt.Errorf("cardcrypto: write %s: %w", name, err)
	}
	p := f.Name()
	err = f.Chmod(0o600)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(p)
		return "", fmt.Errorf("cardcrypto: write %s: %w", name, err)
	}
	return p, nil
}

// linkNoClobber puts src at dst unless dst exists. A hard link does that
// atomically; on file systems without hard links it falls back to a rename
// after an existence check, which is only racy against a concurrent creator.
func linkNoClobber(src, dst string) error {
	err := os.Link(src, dst)
	if err == nil || errors.Is(err, fs.ErrExist) {
		return err
	}
	if _, serr := os.Lstat(dst); serr == nil {
		return fs.ErrExist
	}
	return os.Rename(src, dst)
}

// syncDir makes the new directory entries durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("cardcrypto: sync keys directory: %w", err)
	}
	defer d.Close()
	// Some platforms cannot fsync a directory; the files themselves are
	// synced, so that is not worth failing the start for.
	_ = d.Sync()
	return nil
}

// generate draws fresh keys from crypto/rand.
func generate() (*material, error) {
	var m material
	var err error
	if m.jwe, err = rsa.GenerateKey(rand.Reader, jweBits); err != nil {
		return nil, fmt.Errorf("cardcrypto: generate JWE key: %w", err)
	}
	for _, dst := range []*[]byte{&m.pan, &m.lookup, &m.pin} {
		*dst = make([]byte, dataKeyLen)
		if _, err := rand.Read(*dst); err != nil {
			return nil, fmt.Errorf("cardcrypto: generate key: %w", err)
		}
	}
	if m.zpk, err = generateZPK(); err != nil {
		return nil, err
	}
	return &m, nil
}

// generateZPK draws a double-length 3DES key with odd parity (which DES
// ignores, but HSMs and key ceremonies importing the key expect) and
// distinct halves (equal halves would make it single DES).
func generateZPK() ([]byte, error) {
	k := make([]byte, zpkLen)
	for {
		if _, err := rand.Read(k); err != nil {
			return nil, fmt.Errorf("cardcrypto: generate ZPK: %w", err)
		}
		for i, b := range k {
			k[i] = oddParity(b)
		}
		if !bytes.Equal(k[:8], k[8:]) {
			return k, nil
		}
	}
}

// oddParity sets the low bit of b so that b has an odd number of one bits.
func oddParity(b byte) byte {
	b &^= 1
	ones := 0
	for x := b; x != 0; x &= x - 1 {
		ones++
	}
	if ones%2 == 0 {
		b |= 1
	}
	return b
}

// encode renders the material as the files' contents.
func (m *material) encode() (map[string][]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(m.jwe)
	if err != nil {
		return nil, fmt.Errorf("cardcrypto: encode JWE key: %w", err)
	}
	hexLine := func(b []byte) []byte { return []byte(hex.EncodeToString(b) + "\n") }
	return map[string][]byte{
		FileJWE:    pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
		FilePAN:    hexLine(m.pan),
		FileLookup: hexLine(m.lookup),
		FilePIN:    hexLine(m.pin),
		FileZPK:    hexLine(m.zpk),
	}, nil
}

// newKeys builds the ready-to-use primitives from raw material.
func newKeys(m *material) (*Keys, error) {
	if len(m.pan) != dataKeyLen || len(m.lookup) != dataKeyLen || len(m.pin) != dataKeyLen {
		return nil, errors.New("cardcrypto: data keys must be 32 bytes")
	}
	if len(m.zpk) != zpkLen {
		return nil, errors.New("cardcrypto: ZPK must be 16 bytes")
	}
	if bytes.Equal(m.zpk[:8], m.zpk[8:]) {
		return nil, errors.New("cardcrypto: ZPK halves are equal, which is single DES")
	}
	block, err := aes.NewCipher(m.pan)
	if err != nil {
		return nil, fmt.Errorf("cardcrypto: PAN key: %w", err)
	}
	aead, err := cipher.NewGCMWithRandomNonce(block)
	if err != nil {
		return nil, fmt.Errorf("cardcrypto: PAN key: %w", err)
	}
	// Double-length 3DES is K1 K2 K1 as a triple-length key.
	k3 := make([]byte, 0, 24)
	k3 = append(append(k3, m.zpk...), m.zpk[:8]...)
	zpk, err := des.NewTripleDESCipher(k3)
	if err != nil {
		return nil, fmt.Errorf("cardcrypto: ZPK: %w", err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&m.jwe.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("cardcrypto: JWE public key: %w", err)
	}

	k := &Keys{
		jwe:       m.jwe,
		jwePubPEM: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}),
		jweKID:    rsaThumbprint(&m.jwe.PublicKey),
		data:      aead,
		lookup:    newMACPool(m.lookup),
		pin:       newMACPool(m.pin),
		zpk:       zpk,
	}
	var kcv [8]byte
	zpk.Encrypt(kcv[:], kcv[:])
	k.zpkKCV = strings.ToUpper(hex.EncodeToString(kcv[:3]))

	id := sha256.New()
	for _, key := range [][]byte{m.pan, m.lookup, m.pin} {
		mac := hmac.New(sha256.New, key)
		mac.Write([]byte("antaca cardcrypto data key id"))
		id.Write(mac.Sum(nil))
	}
	k.dataKeysID = hex.EncodeToString(id.Sum(nil)[:8])
	return k, nil
}

// JWEPrivateKey returns the server's JWE key, for decrypting requests. The
// key is shared: callers must not modify it.
func (k *Keys) JWEPrivateKey() *rsa.PrivateKey { return k.jwe }

// JWEPublicKeyPEM returns the public half of the JWE key as a PKIX ("PUBLIC
// KEY") PEM block, as GET /public-key serves it. The slice is a copy.
func (k *Keys) JWEPublicKeyPEM() []byte { return bytes.Clone(k.jwePubPEM) }

// JWEKeyID returns the RFC 7638 SHA-256 thumbprint of the JWE public key,
// base64url: a stable "kid" for the JWKS that changes when the key does.
func (k *Keys) JWEKeyID() string { return k.jweKID }

// ZPKCheckValue returns the ZPK's key check value (the first three bytes of
// a zero block encrypted under it, uppercase hex), the customary way to
// confirm two parties hold the same key without revealing it.
func (k *Keys) ZPKCheckValue() string { return k.zpkKCV }

// DataKeysID returns a non-secret fingerprint of pan.key, lookup.key and
// pin.key, the keys stored data depends on. Recorded next to the data on
// first start, it lets the server refuse to run against a keys directory
// that cannot read that data (a wrong ANTACA_KEYS_DIR would otherwise be
// "filled with fresh keys" and every card would decline as unknown).
func (k *Keys) DataKeysID() string { return k.dataKeysID }

const redacted = "cardcrypto.Keys{REDACTED}"

// String, GoString, Format and LogValue keep key material out of logs and
// error messages whatever verb or logger prints a Keys.
// They have value receivers so that printing a dereferenced *Keys is
// redacted too.
func (Keys) String() string { return redacted }

// GoString implements fmt.GoStringer; see String.
func (Keys) GoString() string { return redacted }

// Format implements fmt.Formatter for every verb; see String.
func (Keys) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// LogValue implements slog.LogValuer; see String.
func (Keys) LogValue() slog.Value { return slog.StringValue(redacted) }

// rsaThumbprint computes the RFC 7638 JWK thumbprint of an RSA public key:
// SHA-256 over the canonical JSON {"e","kty","n"} with base64url members.
func rsaThumbprint(pub *rsa.PublicKey) string {
	e := big.NewInt(int64(pub.E)).Bytes()
	b64 := base64.RawURLEncoding
	canon := `{"e":"` + b64.EncodeToString(e) + `","kty":"RSA","n":"` + b64.EncodeToString(pub.N.Bytes()) + `"}`
	sum := sha256.Sum256([]byte(canon))
	return b64.EncodeToString(sum[:])
}

// macPool hands out HMAC-SHA256 states keyed once, so the authorization path
// neither re-derives the HMAC pads nor allocates per call.
type macPool struct{ p sync.Pool }

type macState struct {
	h   hash.Hash
	in  [64]byte // input staging: a stack buffer would escape through h.Write
	sum [sha256.Size]byte
}

// macHexLen is the length of a hex HMAC-SHA256.
const macHexLen = 2 * sha256.Size

func newMACPool(key []byte) *macPool {
	key = bytes.Clone(key)
	mp := &macPool{}
	mp.p.New = func() any { return &macState{h: hmac.New(sha256.New, key)} }
	return mp
}

// macHex writes hex(HMAC(a || b)) to dst. The staged input (a PAN or a PIN)
// is wiped before the state goes back to the pool.
func macHex[A, B ~string | ~[]byte](mp *macPool, dst *[macHexLen]byte, a A, b B) {
	st := mp.p.Get().(*macState)
	in := append(append(st.in[:0], a...), b...)
	st.h.Reset()
	st.h.Write(in)
	hex.Encode(dst[:], st.h.Sum(st.sum[:0]))
	clear(st.in[:])
	mp.p.Put(st)
}
