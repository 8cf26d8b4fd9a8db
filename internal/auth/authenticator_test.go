package auth

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/takt/takt/internal/chstore"
)

// fakeStore is a KeyLookup that counts its calls. Look-ups run on other
// goroutines, but tests change it only between Authenticate calls, which
// wait for them.
type fakeStore struct {
	keys  map[string]chstore.KeyOwner // by hash
	err   error
	calls atomic.Int64
}

func (f *fakeStore) KeyByHash(ctx context.Context, hash string) (chstore.KeyOwner, error) {
	f.calls.Add(1)
	if k, ok := f.keys[hash]; ok && f.err == nil {
		return k, nil
	}
	return chstore.KeyOwner{}, cmp.Or(f.err, fmt.Errorf("api key: %w", chstore.ErrNotFound))
}

func (f *fakeStore) add(scopes ...string) string {
	key, prefix, hash := NewKey()
	if f.keys == nil {
		f.keys = map[string]chstore.KeyOwner{}
	}
	f.keys[hash] = chstore.KeyOwner{KeyID: uint64(len(f.keys) + 1), Prefix: prefix, Hash: hash, Scopes: scopes,
		UserID: 7, Username: "u", Sites: []uint64{1, 3}}
	return key
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func newTest(t *testing.T, store KeyLookup, rdb *redis.Client, prefix string, opts ...Option) (*Authenticator, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	a, err := New(store, rdb, prefix, quiet, reg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return a, reg
}

func TestAuthenticate(t *testing.T) {
	store := &fakeStore{}
	good := store.add(ScopeIngest, ScopeRead)
	unknown, _, _ := NewKey()
	a, reg := newTest(t, store, nil, "")

	tests := []struct {
		name    string
		key     string
		wantErr error
	}{
		{"valid", good, nil},
		{"unknown", unknown, ErrInvalidKey},
		{"empty", "", ErrInvalidKey},
		{"wrong prefix", "tack_" + good[5:], ErrInvalidKey},
		{"upper case hex", "takt_" + "ABCDEF0123456789ABCDEF0123456789ABCDEF01", ErrInvalidKey},
		{"too short", good[:len(good)-1], ErrInvalidKey},
		{"too long", good + "0", ErrInvalidKey},
	}
	for range 2 { // the second time from the cache
		for _, tt := range tests {
			p, err := a.Authenticate(context.Background(), tt.key)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("%s: err %v, want %v", tt.name, err, tt.wantErr)
			}
			if tt.wantErr == nil && (p.Prefix != Prefix(tt.key) || p.UserID != 7 || !p.HasScope(ScopeIngest) ||
				p.HasScope(ScopeAdmin) || !p.CanSeeSite(3) || p.CanSeeSite(2)) {
				t.Fatalf("%s: principal %+v", tt.name, p)
			}
		}
	}
	if n := store.calls.Load(); n != 2 {
		t.Errorf("store asked %d times, want 2 (both answers are cached, malformed keys need no look-up)", n)
	}
	if n := testutil.ToFloat64(a.rejected); n != 10 {
		t.Errorf("malformed counter %v, want 10", n)
	}
	// Series: hits{local}, misses, lookups{found,not_found}, fallbacks, malformed.
	n, err := testutil.GatherAndCount(reg, "takt_auth_cache_hits_total", "takt_auth_cache_misses_total",
		"takt_auth_store_lookups_total", "takt_auth_redis_fallbacks_total", "takt_auth_malformed_keys_total")
	if err != nil || n != 6 {
		t.Errorf("%d series of the auth metrics, %v; want 6", n, err)
	}
}

func TestAuthenticateStoreError(t *testing.T) {
	store := &fakeStore{err: errors.New("clickhouse down")}
	key := store.add(ScopeIngest)
	a, _ := newTest(t, store, nil, "")
	if _, err := a.Authenticate(context.Background(), key); err == nil || errors.Is(err, ErrInvalidKey) {
		t.Fatalf("err %v: want a look-up error that is not ErrInvalidKey", err)
	}
	store.err = nil
	if _, err := a.Authenticate(context.Background(), key); err != nil {
		t.Fatalf("after recovery: %v (errors are not cached)", err)
	}
}

func TestAuthenticateRejectsHashMismatch(t *testing.T) {
	store := &fakeStore{}
	key := store.add(ScopeIngest)
	h := HashKey(key)
	for _, stored := range []string{HashKey("something else"), h + "00", h[:62], h[:63] + "x", ""} {
		store.keys[h] = chstore.KeyOwner{KeyID: 1, Hash: stored}
		a, _ := newTest(t, store, nil, "")
		if _, err := a.Authenticate(context.Background(), key); !errors.Is(err, ErrInvalidKey) {
			t.Fatalf("stored hash %q: err %v, want ErrInvalidKey", stored, err)
		}
	}
}

func TestForget(t *testing.T) {
	store := &fakeStore{}
	key := store.add(ScopeIngest)
	a, _ := newTest(t, store, nil, "")
	ctx := context.Background()
	// Malformed hashes name no entry; an upper-case one names the key's.
	for _, tt := range []struct {
		hash  string
		calls int64
	}{{"", 1}, {HashKey(key)[:62], 1}, {HashKey(key) + "00", 1}, {strings.ToUpper(HashKey(key)), 2}} {
		if err := a.Forget(ctx, tt.hash); err != nil {
			t.Fatalf("Forget(%q): %v", tt.hash, err)
		}
		a.Authenticate(ctx, key)
		if n := store.calls.Load(); n != tt.calls {
			t.Fatalf("after Forget(%q): store asked %d times, want %d", tt.hash, n, tt.calls)
		}
	}
}

// TestEntryJSON pins the JSON of an entry: package rcache stores it in Redis
// with "found":true put first, which gives the form entries had before
// rcache, read by instances of both versions during a rolling deploy.
func TestEntryJSON(t *testing.T) {
	e := entry{Hash: "ab", Principal: Principal{KeyID: 1, Prefix: "takt_0123456", UserID: 7, Username: "u",
		Sites: []uint64{1, 3}, Scopes: []string{ScopeIngest}}}
	const want = `{"hash":"ab","principal":{"key_id":1,"prefix":"takt_0123456","user_id":7,"username":"u",` +
		`"admin":false,"sites":[1,3],"scopes":["ingest"]}}`
	b, err := json.Marshal(e)
	var back entry
	if err != nil || string(b) != want || json.Unmarshal(b, &back) != nil || !reflect.DeepEqual(back, e) {
		t.Errorf("entry JSON %s, %v; want %s; decoded %+v", b, err, want, back)
	}
}
