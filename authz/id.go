package authz

import (
	"crypto/rand"
	"encoding/hex"
)

// NewID returns a random id with a type prefix, e.g. "hld_9f2c...": 96
// random bits, so ids chosen apart never collide.
func NewID(prefix string) string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return prefix + "_" + hex.EncodeToString(b)
}
