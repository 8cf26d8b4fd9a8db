package queryapi

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/takt/takt/internal/redisx"
	"github.com/takt/takt/internal/testenv"
)

// TestUniqueUnderConcurrency: of simultaneous creates that share a value
// that must be unique (an external id across lines and machines, a
// username, a product code in a site), exactly one succeeds; a value
// becomes free again when its record is deleted or renamed; and without
// Redis creates fail closed.
func TestUniqueUnderConcurrency(t *testing.T) {
	f := newFixture(t)
	const n = 5
	// race sends n creates at once and returns how many succeeded.
	race := func(t *testing.T, path string, args func(i int) url.Values) int {
		t.Helper()
		var wg sync.WaitGroup
		var mu sync.Mutex
		ok := 0
		start := make(chan struct{})
		for i := range n {
			a := args(i)
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				status, _, env := f.send(t, "POST", path, f.keyA, a, false)
				if status == http.StatusOK && env["success"] == true {
					mu.Lock()
					ok++
					mu.Unlock()
				}
			}()
		}
		close(start)
		wg.Wait()
		return ok
	}
	sec := 0
	for round := range 3 {
		ext := fmt.Sprintf("race_%d", round)
		got := race(t, "/api/1.0/lines/", func(i int) url.Values {
			return url.Values{"site": {"1"}, "area": {"1"}, "code": {fmt.Sprintf("R%d_%d", round, i)}, "externalid": {ext}}
		})
		// A machine racing for an external id a line may have.
		got += race(t, "/api/1.0/machines/", func(i int) url.Values {
			return url.Values{"site": {"1"}, "line": {"1"}, "code": {fmt.Sprintf("M%d_%d", round, i)}, "externalid": {ext}}
		})
		if got != 1 {
			t.Errorf("round %d: %d of %d creates of external id %s succeeded, want 1", round, got, 2*n, ext)
		}
		code := fmt.Sprintf("P%d", round)
		if got := race(t, "/api/1.0/products/", func(int) url.Values {
			return url.Values{"site": {"1"}, "code": {code}, "ideal_cycle_time": {"3"}}
		}); got != 1 {
			t.Errorf("round %d: %d of %d creates of product %s succeeded, want 1", round, got, n, code)
		}
		name := fmt.Sprintf("racer%d", round)
		if got := race(t, "/api/1.0/users/", func(int) url.Values {
			sec++
			return f.signCall(time.Now().Add(10*time.Minute+time.Duration(sec)*time.Second), "POST", "users", "",
				url.Values{"username": {name}, "sites": {"1"}})
		}); got != 1 {
			t.Errorf("round %d: %d of %d creates of user %s succeeded, want 1", round, got, n, name)
		}
	}
	if n := len(records(t, f.getJSON(t, "/api/1.0/lines/?externalid=race_0", f.keyA, http.StatusOK))) +
		len(records(t, f.getJSON(t, "/api/1.0/machines/?externalid=race_0", f.keyA, http.StatusOK))); n != 1 {
		t.Errorf("%d locations with external id race_0", n)
	}

	t.Run("freed by delete and rename", func(t *testing.T) {
		create := func(code, ext string) string {
			_, _, env := f.send(t, "POST", "/api/1.0/lines/", f.keyA, url.Values{"site": {"1"}, "area": {"1"}, "code": {code}, "externalid": {ext}}, false)
			return idText(t, data(t, env))
		}
		id := create("FREE1", "free_1")
		_, _, env := f.send(t, "DELETE", "/api/1.0/lines/"+id+"/", f.keyA, nil, false)
		data(t, env)
		id = create("FREE1", "free_1")
		_, _, env = f.send(t, "PUT", "/api/1.0/lines/"+id+"/", f.keyA, url.Values{"externalid": {"free_2"}, "code": {"FREE2"}}, false)
		data(t, env)
		create("FREE1", "free_1")
		// The renamed line holds its new external id.
		status, _, env := f.send(t, "POST", "/api/1.0/machines/", f.keyA, url.Values{"site": {"1"}, "line": {"1"}, "code": {"FREE3"}, "externalid": {"free_2"}}, false)
		if status != http.StatusOK || env["success"] != false {
			t.Errorf("external id of a renamed line taken again: %d %v", status, env)
		}
		// An update that keeps its unique values needs no reservation.
		_, _, env = f.send(t, "PUT", "/api/1.0/lines/"+id+"/", f.keyA, url.Values{"externalid": {"free_2"}, "description": {"kept"}}, false)
		data(t, env)
	})

	t.Run("without Redis creates fail closed", func(t *testing.T) {
		cfg := f.cfg
		cfg.RedisAddr = deadAddress(t)
		rdb := redisx.NewClient(cfg.RedisAddr, "")
		t.Cleanup(func() { rdb.Close() })
		g := &fixture{srv: serve(t, f.store, rdb, nil, cfg)}
		status, _, env := g.send(t, "POST", "/api/1.0/areas/", f.keyA, url.Values{"site": {"1"}, "code": {"NOREDIS"}}, false)
		if status != http.StatusServiceUnavailable || env["success"] != false {
			t.Errorf("create without Redis: %d %v", status, env)
		}
		// An update that changes no unique value goes on.
		status, _, env = g.send(t, "PUT", "/api/1.0/areas/1/", f.keyA, url.Values{"description": {"still"}}, false)
		if status != http.StatusOK || env["success"] != true {
			t.Errorf("update without Redis: %d %v", status, env)
		}
	})
}

// TestIDsNeverBelowFloor: ids stay above the floor and above ClickHouse's
// largest id while the counter vanishes between and during calls, or is
// found below the floor.
func TestIDsNeverBelowFloor(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Redis")
	}
	rdb, prefix := testenv.Redis(t)
	key := redisx.NewKeys(prefix).RecordIDs()
	const top = 5000 // ClickHouse's largest id
	s := &idSource{rdb: rdb, key: key, highest: func(context.Context) (uint64, error) { return top, nil }}
	ctx := context.Background()

	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
				rdb.Del(ctx, key)
			}
		}
	}()
	low := 0
	seen := map[uint64]bool{}
	for range 2000 {
		id, err := s.next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if id <= top {
			low++
		}
		seen[id] = true
	}
	close(stop)
	<-done
	if low > 0 {
		t.Errorf("%d of 2000 ids at or below ClickHouse's largest id %d", low, top)
	}
	rdb.Set(ctx, key, strconv.Itoa(7), 0)
	if id, err := s.next(ctx); err != nil || id <= top {
		t.Errorf("counter found at 7: id %d, %v", id, err)
	}
}
