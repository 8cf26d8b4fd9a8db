// Package auth authenticates API keys.
//
// A key is "takt_" followed by 40 hex digits (160 random bits). Takt stores
// only its SHA-256 (hex) and a short prefix for display: a fast hash is
// enough for a key with that much entropy, and it keeps a cache miss cheap.
package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
)

// KeyPrefixLen is how many leading characters of a key are shown in
// listings and logs ("takt_" and 7 hex digits).
const KeyPrefixLen = 12

// NewKey returns a new random API key with its display prefix and hash.
func NewKey() (key, prefix, hash string) {
	var b [20]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("crypto/rand: " + err.Error()) // never fails on supported platforms
	}
	key = "takt_" + hex.EncodeToString(b[:])
	return key, Prefix(key), HashKey(key)
}

// HashKey returns the stored form of a key: hex(SHA-256(key)).
func HashKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// Prefix returns the part of a key safe to log.
func Prefix(key string) string {
	if len(key) <= KeyPrefixLen {
		return key
	}
	return key[:KeyPrefixLen]
}
