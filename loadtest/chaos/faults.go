package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// fault is one row of the matrix: inject breaks something while the load
// runs, hold is how long it stays broken, heal repairs it. checks, when
// set, runs after the drain and adds checks of its own to the result.
// ingestFlows says ingest must not notice the fault: every part sent is
// answered 200 and none is held back (the ingestor depends only on the
// broker; ClickHouse, Redis and the processor are behind it or caches).
type fault struct {
	name, what  string
	ingestFlows bool
	hold        time.Duration
	inject      func(ctx context.Context, c *Cluster) error
	heal        func(ctx context.Context, c *Cluster) error
	checks      func(ctx context.Context, c *Cluster, res *Result)
}

func nothing(context.Context, *Cluster) error { return nil }

// Faults returns the names of the faults, in the order a run injects
// them.
func Faults() []string {
	var names []string
	for _, f := range matrix(false) {
		names = append(names, f.name)
	}
	return names
}

// matrix is every fault, each built fresh (some keep state between their
// steps); short shortens the faults that last.
func matrix(short bool) []fault {
	var flush redisFlush
	scaled := func(full, brief time.Duration) time.Duration {
		if short {
			return brief
		}
		return full
	}
	pause := scaled(15*time.Second, 8*time.Second)
	return []fault{
		{name: "none", ingestFlows: true, what: "no fault (control run)", hold: 0, inject: nothing, heal: nothing},
		{
			name: "processor-kill", ingestFlows: true, what: "processor SIGKILLed between an insert and its commit, restarted",
			hold: 0,
			inject: func(ctx context.Context, c *Cluster) error {
				// Restart it armed: it kills itself after its 3rd insert,
				// before that flush's commit.
				if err := c.processor.stop(30 * time.Second); err != nil {
					return err
				}
				if err := c.processor.startWith(map[string]string{"TAKT_FAILPOINT_CRASH_AFTER_INSERTS": "3"}); err != nil {
					return err
				}
				if err := c.processor.wait(60 * time.Second); err == nil || !strings.Contains(err.Error(), "killed") {
					return fmt.Errorf("armed processor did not kill itself at its failpoint: %v", err)
				}
				return nil
			},
			heal: func(ctx context.Context, c *Cluster) error { return c.startService(ctx, c.processor) },
		},
		{
			name: "processor-join-leave", ingestFlows: true, what: "a second processor joins the group, then leaves (SIGTERM) mid-batch",
			hold:   scaled(10*time.Second, 4*time.Second),
			inject: func(ctx context.Context, c *Cluster) error { return c.startService(ctx, c.processor2) },
			heal:   func(ctx context.Context, c *Cluster) error { return c.processor2.stop(60 * time.Second) },
		},
		{
			name: "ingestor-kill", what: "ingestor SIGKILLed with requests in flight, restarted",
			hold:   time.Second,
			inject: func(ctx context.Context, c *Cluster) error { return c.ingestor.kill() },
			heal:   func(ctx context.Context, c *Cluster) error { return c.startService(ctx, c.ingestor) },
		},
		{
			name: "redis-kill", ingestFlows: true, what: "Redis SIGKILLed, restarted empty",
			hold:   scaled(5*time.Second, 3*time.Second),
			inject: func(ctx context.Context, c *Cluster) error { return c.redisProc.kill() },
			heal:   func(ctx context.Context, c *Cluster) error { return c.startRedis(ctx) },
		},
		{
			// CLIENT PAUSE blocks every client, CLIENT UNPAUSE included
			// (Redis 7.0): the pause is set for the hold and ends by
			// itself. The services' in-process caches expire within it
			// (5 s in the harness), so look-ups meet the hanging Redis.
			name: "redis-pause", ingestFlows: true, what: "Redis paused (CLIENT PAUSE ALL), until the pause ends",
			hold: pause,
			inject: func(ctx context.Context, c *Cluster) error {
				rdb := c.redis()
				defer rdb.Close()
				return rdb.Do(ctx, "CLIENT", "PAUSE", strconv.FormatInt(pause.Milliseconds(), 10), "ALL").Err()
			},
			heal: func(ctx context.Context, c *Cluster) error {
				return c.redisProc.waitReady(ctx, 30*time.Second, func(ctx context.Context) error {
					rdb := c.redis()
					defer rdb.Close()
					return rdb.Ping(ctx).Err()
				})
			},
		},
		{
			name: "redis-flush", ingestFlows: true, what: "Redis flushed (FLUSHALL): API keys, record ids and rate limits rebuilt",
			hold:   0,
			inject: flush.inject,
			heal:   nothing,
			checks: flush.checks,
		},
		{
			name: "broker-kill", what: "broker SIGKILLed, restarted on its data directory",
			hold:   scaled(3*time.Second, 2*time.Second),
			inject: func(ctx context.Context, c *Cluster) error { return c.broker.kill() },
			heal:   func(ctx context.Context, c *Cluster) error { return c.startBroker(ctx) },
		},
		{
			name: "broker-pause", what: "broker paused (SIGSTOP), then resumed (SIGCONT)",
			hold:   scaled(10*time.Second, 5*time.Second),
			inject: func(ctx context.Context, c *Cluster) error { return c.broker.signal(syscall.SIGSTOP) },
			heal:   func(ctx context.Context, c *Cluster) error { return c.broker.signal(syscall.SIGCONT) },
		},
		{
			name: "clickhouse-slow", ingestFlows: true, what: "ClickHouse answers 2 s late (TCP proxy)",
			hold:   scaled(15*time.Second, 6*time.Second),
			inject: func(ctx context.Context, c *Cluster) error { c.proxy.SetDelay(2 * time.Second); return nil },
			heal:   func(ctx context.Context, c *Cluster) error { c.proxy.SetDelay(0); return nil },
		},
		{
			name: "clickhouse-pause", ingestFlows: true, what: "ClickHouse paused (SIGSTOP 20 s), then resumed (SIGCONT)",
			hold:   scaled(20*time.Second, 6*time.Second),
			inject: func(ctx context.Context, c *Cluster) error { return c.clickhouse.signal(syscall.SIGSTOP) },
			heal:   func(ctx context.Context, c *Cluster) error { return c.clickhouse.signal(syscall.SIGCONT) },
		},
		{
			name: "clickhouse-kill", ingestFlows: true, what: "ClickHouse SIGKILLed during an INSERT into parts, restarted",
			hold:   2 * time.Second,
			inject: func(ctx context.Context, c *Cluster) error { return c.killClickHouseMidInsert(ctx) },
			heal:   func(ctx context.Context, c *Cluster) error { return c.startClickHouse(ctx) },
		},
	}
}

// killClickHouseMidInsert SIGKILLs ClickHouse while an INSERT into parts
// is running: it polls system.processes (at most 20 s) and kills at the
// first sighting. Without a sighting it kills anyway and says so.
func (c *Cluster) killClickHouseMidInsert(ctx context.Context) error {
	q := "SELECT count() FROM system.processes WHERE query LIKE 'INSERT INTO `" + database + "`.parts%'"
	deadline := time.Now().Add(20 * time.Second)
	seen := false
	for !seen && time.Now().Before(deadline) && ctx.Err() == nil {
		out, err := c.chQuery(ctx, q)
		seen = err == nil && out != "0"
		if !seen {
			time.Sleep(2 * time.Millisecond)
		}
	}
	if err := c.clickhouse.kill(); err != nil {
		return err
	}
	if !seen {
		c.logger.Warn("no INSERT into parts seen running within 20 s; ClickHouse killed anyway")
	}
	return nil
}

// redisFlush is the FLUSHALL fault with its before/after checks: a record
// created after the flush gets a larger id than one created before, the
// key without its own limit is still limited, and keys still
// authenticate.
type redisFlush struct {
	idBefore      uint64
	limitedBefore []int
	err           error
}

func (f *redisFlush) inject(ctx context.Context, c *Cluster) error {
	f.idBefore, f.err = c.createProduct(ctx)
	if f.err == nil {
		f.limitedBefore, f.err = c.limitedBurst(ctx)
	}
	rdb := c.redis()
	defer rdb.Close()
	return rdb.FlushAll(ctx).Err()
}

func (f *redisFlush) checks(ctx context.Context, c *Cluster, res *Result) {
	if f.err != nil {
		res.check("before the flush", false, f.err.Error())
		return
	}
	id, err := c.createProduct(ctx)
	res.check("ids rebuilt", err == nil && id > f.idBefore,
		fmt.Sprintf("product created before the flush: id %d; after: id %d (%v)", f.idBefore, id, err))
	after, err := c.limitedBurst(ctx)
	limited := func(s []int) bool {
		return len(s) > 0 && s[0] == http.StatusOK && contains(s, http.StatusTooManyRequests)
	}
	res.check("limits rebuilt", err == nil && limited(f.limitedBefore) && limited(after),
		fmt.Sprintf("%d requests at once with a key limited to %d/s, burst %d: before %v, after %v (%v)",
			limitedBurst+3, limitedRate, limitedBurst, f.limitedBefore, after, err))
	res.check("keys rebuilt", err == nil && len(after) > 0 && after[0] == http.StatusOK,
		"the limited key (cached in Redis before the flush) authenticates after it")
}

func contains(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// createProduct creates a product through the record API and returns its
// id.
func (c *Cluster) createProduct(ctx context.Context) (uint64, error) {
	form := url.Values{"site": {"1"}, "code": {"CHAOS-" + strconv.FormatInt(time.Now().UnixNano(), 36)},
		"description": {"chaos harness"}, "ideal_cycle_time": {"30"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+c.queryAddr+"/api/1.0/products/",
		strings.NewReader(form.Encode()))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("L2LAUTH", c.apiKey)
	resp, err := c.httpc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("create product: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var ans struct {
		Success bool
		Error   string
		Data    struct{ ID json.Number }
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&ans); err != nil || !ans.Success {
		return 0, fmt.Errorf("create product: HTTP %d: %.300s", resp.StatusCode, b)
	}
	id, err := strconv.ParseUint(ans.Data.ID.String(), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("create product: id %q: %w", ans.Data.ID, err)
	}
	return id, nil
}

// limitedBurst sends burst+3 parts at once with the limited key (for the
// demo line, outside the harness's locations) and returns their statuses
// in order of sending. The limiter fails open for a second when a Redis
// call exceeds its 100 ms (a busy machine), so a burst that was not
// limited is tried again, up to three times, once the bucket refilled.
func (c *Cluster) limitedBurst(ctx context.Context) ([]int, error) {
	var out []int
	var err error
	for range 3 {
		if out, err = c.limitedBurstOnce(ctx); err != nil || contains(out, http.StatusTooManyRequests) {
			return out, err
		}
		sleep(ctx, time.Duration(limitedBurst+1)*time.Second/limitedRate)
	}
	return out, err
}

func (c *Cluster) limitedBurstOnce(ctx context.Context) ([]int, error) {
	var out []int
	for i := range limitedBurst + 3 {
		body := fmt.Sprintf(`{"part":{"external_id":"line_1","quantity":1,"recorded_at":%d.%03d}}`,
			time.Now().Unix(), i)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost,
			"http://"+c.ingestAddr+"/api/external/production/process_part", strings.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("API-KEY", c.limitedKey)
		resp, err := c.httpc.Do(req)
		if err != nil {
			return out, err
		}
		resp.Body.Close()
		out = append(out, resp.StatusCode)
	}
	return out, nil
}
