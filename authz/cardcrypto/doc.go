// Package cardcrypto holds the server's key material and performs every
// cryptographic operation on card data: PAN and CVV2 encryption at rest, PAN
// lookup tokens, PAN and CVV2 generation, PIN verifiers and ISO 9564 format 0
// PIN blocks (DE52), and the RSA key behind the JWE channel.
//
// Its code uses the standard library only, so that what protects card data can be
// read in one place and audited against the standard library's guarantees.
// Nothing in this package logs, and no error it returns contains a PAN, a
// CVV2, a PIN or key material; callers may log its errors as they are.
//
// # Keys directory
//
// LoadOrCreate reads the directory named by ANTACA_KEYS_DIR. It holds five
// files, each readable by the server's user only (0600, directory 0700):
//
//	jwe.pem     RSA 2048 private key, PKCS#8 PEM ("PRIVATE KEY"): the
//	            server's JWE key. Clients encrypt requests to its public
//	            half (GET /public-key, /.well-known/jwks.json).
//	            Replaceable: a new key only breaks clients that cached the
//	            old public key.
//	pan.key     AES-256 key, 32 bytes as 64 hex digits: encrypts PANs and
//	            CVV2s at rest (AES-256-GCM). Losing it makes every stored
//	            PAN and CVV2 unreadable.
//	lookup.key  HMAC-SHA256 key, 32 bytes as 64 hex digits: turns a PAN
//	            into the lookup token the store indexes cards by. Losing or
//	            changing it makes every card unfindable by PAN.
//	pin.key     HMAC-SHA256 key, 32 bytes as 64 hex digits: keys the PIN
//	            verifiers. Losing it invalidates every PIN that was set.
//	zpk.key     double-length 3DES zone PIN key (K1||K2), 16 bytes as 32
//	            hex digits, odd parity when generated here: protects PIN
//	            blocks on the wire (DE52, ISO 9564 format 0). Shared with
//	            the acquirer side (the simulator reads the same directory);
//	            replaceable in step with it, since nothing stored depends
//	            on it.
//
// Hex files may end in a newline; surrounding white space is ignored.
//
// A missing or empty directory (none of the five files present) is created
// and filled with fresh random keys on first start. A directory holding some
// but not all of the files is refused with ErrIncompleteKeys naming the
// missing ones: silently generating a new pan.key, lookup.key or pin.key
// would make the data already stored under the old one unreadable, which is
// worse than not starting. Files are written to temporary names, synced and
// then hard-linked into place in a fixed order without overwriting, so no
// key file is ever half-written (a crash between two links leaves a partial
// directory, refused like any other; as nothing was encrypted under it yet,
// emptying it is safe), and two processes initialising the same empty
// directory at once end up with one set of keys (the one that linked
// jwe.pem first; the other waits for it). The keys are never rewritten once
// they exist; back them up with the database, because the database is
// useless without pan.key and lookup.key. Keys.DataKeysID gives a
// non-secret fingerprint of the keys stored data depends on, which the
// server can record next to the data to detect a wrong keys directory
// before it declines every card as unknown.
//
// # Decisions
//
// PAN and CVV2 ciphertexts are AES-256-GCM with a random 96-bit nonce and a
// purpose string ("pan" or "cvv", with a format version) as additional
// data, so a CVV2 ciphertext copied into a PAN column, or the reverse, fails
// authentication instead of decrypting. The stored form is base64 of a
// version byte, the nonce, the ciphertext and the tag; the version byte
// leaves room for key rotation. Random nonces bound one key to 2^32
// encryptions, far beyond the number of cards a program issues.
//
// PANs are found by LookupToken, a keyed hash (HMAC-SHA256), never by the
// ciphertext (which is randomised) nor by a plain hash (the PAN space is
// small enough to enumerate).
//
// CVV2 is random and stored encrypted, not derived from card verification
// keys (3DES under CVK A/B over PAN, expiry and service code, as the
// networks' CVV method does). The derived value is a function of PAN and
// expiry (the service code is fixed at 000 for CVV2), so it cannot change
// without reissuing the card; the product requires a CVV2 reset that gives
// a new value while PAN and expiry stay. The cost is that CVV2 is card data
// at rest, hence encrypted like the PAN and never logged.
//
// A PIN is stored only as a verifier: HMAC-SHA256 under pin.key of the 12
// rightmost PAN digits excluding the check digit (the same digits ISO 9564
// binds a PIN block to) followed by the PIN. It is one-way; a PIN is never
// recoverable. The PIN space is tiny (10^4 for four digits), so a slow hash
// without a secret would not protect it; the secret key does, and keeps
// verification cheap on the authorization path.
//
// PIN blocks arrive in DE52 as ISO 9564-1 format 0 blocks under the ZPK:
// 3DES-ECB over (0 || PIN length || PIN digits || F padding) XOR
// (0000 || 12 PAN digits). The format checks DecodePINBlock performs reject
// most blocks encrypted under another key or for another PAN, but they are
// not an integrity check: a block can decode to a wrong PIN, which the
// verifier comparison then declines.
//
// PAN generation only draws a PAN; it does not know which PANs exist.
// Uniqueness is the caller's job, checked against the store (by lookup
// token) with a retry on collision, because only the store knows what has
// been issued.
//
// Keys is immutable after loading and safe for concurrent use. Printing or
// logging a Keys value shows no key material.
package cardcrypto
