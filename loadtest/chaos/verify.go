package chaos

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// harnessPrefix starts the external ids of the load harness's machines
// (loadtest provisions lt_m0001, lt_m0002, ...); the harness's own
// probes use the demo line, which the counts leave out.
const harnessPrefix = "lt_m"

func (c *Cluster) directAddr() string { return "127.0.0.1:" + strconv.Itoa(c.chTCP) }

// watchStored polls ClickHouse every 200 ms until it holds at least n rows
// of the harness's parts received since start, and returns when it saw
// them; zero when deadline passed first.
func (c *Cluster) watchStored(ctx context.Context, start time.Time, n int64, deadline time.Time) time.Time {
	q := fmt.Sprintf("SELECT count() FROM `%s`.parts WHERE received_ms >= %d AND startsWith(externalid, '%s')",
		database, start.UnixMilli(), harnessPrefix)
	for ctx.Err() == nil {
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		out, err := c.chQuery(qctx, q)
		cancel()
		if err == nil {
			if got, err := strconv.ParseInt(out, 10, 64); err == nil && got >= n {
				return time.Now()
			}
		}
		if time.Now().After(deadline) {
			return time.Time{}
		}
		sleep(ctx, 200*time.Millisecond)
	}
	return time.Time{}
}

// chLines runs a query over ClickHouse's HTTP interface and calls fn for
// every line of its TabSeparated answer.
func (c *Cluster) chLines(ctx context.Context, q string, fn func(fields []string) error) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	u := "http://127.0.0.1:" + strconv.Itoa(c.chHTTP) + "/?" + url.Values{"query": {q + " FORMAT TabSeparated"}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("clickhouse HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(b)))
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if err := fn(strings.Split(sc.Text(), "\t")); err != nil {
			return err
		}
	}
	return sc.Err()
}

// storedParts returns how many copies ClickHouse holds of each of the
// harness's parts received since start.
func (c *Cluster) storedParts(ctx context.Context, start time.Time) (map[partKey]int, error) {
	out := map[partKey]int{}
	q := fmt.Sprintf("SELECT externalid, recorded_ms, count() FROM `%s`.parts WHERE received_ms >= %d AND startsWith(externalid, '%s') GROUP BY externalid, recorded_ms",
		database, start.UnixMilli(), harnessPrefix)
	var err error
	for attempt := range 5 { // ClickHouse may just have restarted
		clear(out)
		err = c.chLines(ctx, q, func(f []string) error {
			if len(f) != 3 {
				return fmt.Errorf("stored parts: line %q", strings.Join(f, "\t"))
			}
			ms, err1 := strconv.ParseInt(f[1], 10, 64)
			n, err2 := strconv.Atoi(f[2])
			if err1 != nil || err2 != nil {
				return fmt.Errorf("stored parts: line %q", strings.Join(f, "\t"))
			}
			out[partKey{f[0], ms}] = n
			return nil
		})
		if err == nil {
			return out, nil
		}
		sleep(ctx, time.Duration(attempt+1)*time.Second)
	}
	return nil, fmt.Errorf("stored parts: %w", err)
}

// APITally is what the parts record area shows of the harness's parts
// received since the fault's load started, paged with the exactly-once
// loop (no order_by, offset += page length).
type APITally struct {
	// Checked: the area could be paged to the end.
	Checked bool  `json:"checked"`
	Records int64 `json:"records"`
	Lost    int64 `json:"lost"`
	Doubled int64 `json:"doubled"`
	Foreign int64 `json:"foreign"`
}

// OK reports whether the parts area shows every acknowledged part once.
func (a APITally) OK() bool { return a.Checked && a.Lost == 0 && a.Doubled == 0 && a.Foreign == 0 }

// apiParts pages the parts area and compares it with the ledger.
func (c *Cluster) apiParts(ctx context.Context, start time.Time, led *ledger) (APITally, error) {
	led.mu.Lock()
	answers := make(map[partKey]int, len(led.parts))
	for k, v := range led.parts {
		answers[k] = v
	}
	led.mu.Unlock()

	seen := map[partKey]int{}
	const limit = 2000
	maxPages := len(answers)/limit + 20
	offset := 0
	for page := 0; ; page++ {
		if page >= maxPages {
			return APITally{}, fmt.Errorf("more than %d pages: the area shows far more parts than were sent", maxPages)
		}
		q := url.Values{
			"received_at__gte": {start.UTC().Truncate(time.Second).Format("2006-01-02T15:04:05")},
			"fields":           {"externalid,recorded_at"},
			"limit":            {strconv.Itoa(limit)},
			"offset":           {strconv.Itoa(offset)},
		}
		recs, err := c.partsPage(ctx, q)
		if err != nil {
			return APITally{}, err
		}
		for _, r := range recs {
			if !strings.HasPrefix(r.ExternalID, harnessPrefix) {
				continue
			}
			at, err := time.Parse("2006-01-02 15:04:05.999999999", r.RecordedAt)
			if err != nil {
				return APITally{}, fmt.Errorf("recorded_at %q: %w", r.RecordedAt, err)
			}
			seen[partKey{r.ExternalID, at.UnixMilli()}]++
		}
		offset += len(recs)
		if len(recs) < limit {
			break
		}
	}
	t := APITally{Checked: true}
	for k, n := range seen {
		t.Records += int64(n)
		if n > 1 {
			t.Doubled += int64(n - 1)
		}
		if _, ok := answers[k]; !ok {
			t.Foreign += int64(n)
		}
	}
	for k, status := range answers {
		if status == http.StatusOK && seen[k] == 0 {
			t.Lost++
		}
	}
	return t, nil
}

type partRecord struct {
	ExternalID string `json:"externalid"`
	RecordedAt string `json:"recorded_at"`
}

func (c *Cluster) partsPage(ctx context.Context, q url.Values) ([]partRecord, error) {
	var lastErr error
	for attempt := range 5 {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c.queryAddr+"/api/1.0/parts/?"+q.Encode(), nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("L2LAUTH", c.apiKey)
		resp, err := c.httpc.Do(req)
		if err == nil {
			var ans struct {
				Success bool
				Error   string
				Data    []partRecord
			}
			err = json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&ans)
			resp.Body.Close()
			if err == nil && ans.Success {
				return ans.Data, nil
			}
			if err == nil {
				err = fmt.Errorf("HTTP %d: %s", resp.StatusCode, ans.Error)
			}
		}
		lastErr = err
		sleep(ctx, time.Duration(attempt+1)*time.Second)
	}
	return nil, lastErr
}

// RollupCheck compares the rollups with parts over the whole run.
type RollupCheck struct {
	// OK: parts_hourly equals the rollup of parts, key by key, and
	// parts_hour_ranges covers every row.
	OK           bool   `json:"ok"`
	PartsEvents  uint64 `json:"parts_events"`
	RollupEvents uint64 `json:"rollup_events"`
	// DiffKeys counts (location, product, hour) keys that differ;
	// OutsideRanges rows of parts no hour range covers.
	DiffKeys      int    `json:"diff_keys"`
	OutsideRanges uint64 `json:"outside_ranges"`
}

func (c *Cluster) checkRollups(ctx context.Context) (RollupCheck, error) {
	var rc RollupCheck
	s, err := c.store(ctx)
	if err != nil {
		return rc, err
	}
	defer s.Close()
	from, to := time.Now().Add(-48*time.Hour), time.Now().Add(48*time.Hour)
	raw, err := s.PartsHourlyRaw(ctx, 1, from, to)
	if err != nil {
		return rc, err
	}
	roll, err := s.PartsHourly(ctx, 1, from, to)
	if err != nil {
		return rc, err
	}
	type key struct {
		kind          string
		loc, prod, at uint64
	}
	diff := map[key]bool{}
	rawBy := map[key][5]uint64{}
	for _, r := range raw {
		rc.PartsEvents += r.Events
		rawBy[key{r.LocationKind, r.LocationID, r.ProductID, uint64(r.Hour.Unix())}] = [5]uint64{r.Produced, r.Good, r.Scrap, r.Rework, r.Events}
	}
	for _, r := range roll {
		rc.RollupEvents += r.Events
		k := key{r.LocationKind, r.LocationID, r.ProductID, uint64(r.Hour.Unix())}
		if rawBy[k] != [5]uint64{r.Produced, r.Good, r.Scrap, r.Rework, r.Events} {
			diff[k] = true
		}
		delete(rawBy, k)
	}
	for k := range rawBy {
		diff[k] = true
	}
	rc.DiffKeys = len(diff)
	out, err := c.chQuery(ctx, fmt.Sprintf(`SELECT count() FROM (
			SELECT id, toDateTime(intDiv(toUInt32(recorded_at), 3600) * 3600) AS hour, partition FROM `+"`%[1]s`"+`.parts)
		ANY LEFT JOIN (
			SELECT hour, partition, minMerge(min_id) AS mn, maxMerge(max_id) AS mx
			FROM `+"`%[1]s`"+`.parts_hour_ranges GROUP BY hour, partition) USING (hour, partition)
		WHERE NOT (id >= mn AND id <= mx)`, database))
	if err != nil {
		return rc, err
	}
	if rc.OutsideRanges, err = strconv.ParseUint(out, 10, 64); err != nil {
		return rc, fmt.Errorf("rows outside ranges: %q", out)
	}
	rc.OK = rc.DiffKeys == 0 && rc.OutsideRanges == 0
	return rc, nil
}
