package queryapi

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/takt/takt/internal/auth"
	"github.com/takt/takt/internal/bootstrap"
	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/config"
	"github.com/takt/takt/internal/demo"
	"github.com/takt/takt/internal/httpx"
	"github.com/takt/takt/internal/testenv"
)

// fixture is a query API over a scratch database holding the demo data,
// a second site with its own user, and parts of both sites.
type fixture struct {
	srv       *httptest.Server
	admin     *httptest.Server // the admin listener (newFixture only)
	keyA      string           // demo key: site 1, every scope
	keyB      string           // site 2, read
	keyIngest string           // site 1, ingest only
	partsA    []uint64
	partsB    []uint64
	secret    string // signs for user 1 (server demo.SecretServer)
	store     *chstore.Store
	topic     string // the scratch parts topic reason assignments go to
	rdb       *redis.Client
	cfg       Config
}

const (
	partsOfA = 23 // not a multiple of the page sizes below
	partsOfB = 3
)

// partsBase is in winter: Europe/Berlin is then UTC+01:00.
var partsBase = time.Date(2024, 1, 15, 10, 0, 0, 123e6, time.UTC)

// seededDB opens a scratch database holding the demo data and a Redis key
// prefix of its own, and returns the query API's settings for them.
func seededDB(t testing.TB) (*chstore.Store, *redis.Client, Config, bootstrap.Credentials) {
	t.Helper()
	store, chCfg := testenv.ClickHouse(t)
	rdb, prefix := testenv.Redis(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	seeded, err := demo.Seed(ctx, store, "", "")
	if err != nil {
		t.Fatal(err)
	}
	var env config.Env
	cfg := ConfigFromEnv(&env)
	cfg.ClickHouse, cfg.RedisPrefix, cfg.Watermark = chCfg, prefix, false
	return store, rdb, cfg, seeded
}

// serve starts a query API over store and rdb with cfg, reason
// assignments going to kc, until the test ends.
func serve(t testing.TB, store *chstore.Store, rdb *redis.Client, kc kafkaClient, cfg Config) *httptest.Server {
	t.Helper()
	srv, _ := serveWithAdmin(t, store, rdb, kc, cfg)
	return srv
}

// serveWithAdmin is serve that also starts the admin listener's handler
// (its metrics, readiness with reasons).
func serveWithAdmin(t testing.TB, store *chstore.Store, rdb *redis.Client, kc kafkaClient, cfg Config) (srv, admin *httptest.Server) {
	t.Helper()
	reg := prometheus.NewRegistry()
	r, err := newEngine(store, rdb, kc, cfg, nil, testenv.Logger(t), reg)
	if err != nil {
		t.Fatal(err)
	}
	srv = httptest.NewServer(r)
	t.Cleanup(srv.Close)
	admin = httptest.NewServer(httpx.Admin(readiness(store, kc), reg))
	t.Cleanup(admin.Close)
	return srv, admin
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	store, rdb, cfg, seeded := seededDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	f := &fixture{keyA: seeded.APIKey, secret: seeded.SecretKey, store: store}
	audit := chstore.Audit{CreatedBy: "test", LastUpdatedBy: "test"}
	keyB, prefB, hashB := auth.NewKey()
	keyI, prefI, hashI := auth.NewKey()
	f.keyB, f.keyIngest = keyB, keyI
	for _, err := range []error{
		store.PutSite(ctx, chstore.Site{ID: 2, Description: "Plant B", Timezone: "America/Chicago", Audit: audit}),
		store.PutLine(ctx, chstore.Line{ID: 2, Site: 2, Area: 2, Code: "LINEB", ExternalID: "line_b", Audit: audit}),
		store.PutProduct(ctx, chstore.Product{ID: 3, Site: 2, Code: "PRODB", IdealCycleTime: 30, Audit: audit}),
		store.PutUser(ctx, chstore.User{ID: 2, Username: "b", Sites: []uint64{2}, Active: true, Audit: audit}),
		store.PutAPIKey(ctx, chstore.APIKey{ID: 2, User: 2, Prefix: prefB, Hash: hashB, Scopes: []string{"read"}, Active: true, Audit: audit}),
		store.PutUser(ctx, chstore.User{ID: 3, Username: "device", Sites: []uint64{1}, Active: true, Audit: audit}),
		store.PutAPIKey(ctx, chstore.APIKey{ID: 3, User: 3, Prefix: prefI, Hash: hashI, Scopes: []string{"ingest"}, Active: true, Audit: audit}),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}

	var b chstore.PartsBlock
	for i := range partsOfA + partsOfB {
		r := chstore.PartRow{
			ID: chstore.PartID(int32(i%2), int64(i)), EventID: uuid.Must(uuid.NewV7()),
			Site: 1, LocationKind: "line", LocationID: 1, ExternalID: demo.LineExternalID,
			ProductID: 1, ProductCode: demo.ProductCode, ProductReported: demo.ProductCode, ProductResolution: "code",
			Quantity: uint32(1 + i%3), Quality: "good", CycleTime: 45.5, HasCycleTime: true,
			RecordedMs: partsBase.Add(time.Duration(i) * time.Second).UnixMilli(), Topic: "t",
			Partition: int32(i % 2), Offset: int64(i),
		}
		r.ReceivedMs = r.RecordedMs + 250
		if i%5 == 4 {
			r.Quality, r.Reason = "scrap", demo.ReasonCode
			r.HasCycleTime, r.CycleTime = false, 0
		}
		if i >= partsOfA {
			r.Site, r.LocationID, r.ExternalID, r.ProductID, r.ProductCode = 2, 2, "line_b", 3, "PRODB"
			f.partsB = append(f.partsB, r.ID)
		} else {
			f.partsA = append(f.partsA, r.ID)
		}
		if err := b.Append(&r); err != nil {
			t.Fatal(err)
		}
	}
	if err := store.InsertParts(ctx, &b); err != nil {
		t.Fatal(err)
	}

	f.topic = testenv.Topic(t, 2)
	cfg.PartsTopic = f.topic
	f.rdb, f.cfg = rdb, cfg
	cl, err := kgo.NewClient(kgo.SeedBrokers(testenv.Stack(t).Brokers...), kgo.DefaultProduceTopic(f.topic),
		kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerLinger(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	f.srv, f.admin = serveWithAdmin(t, store, rdb, cl, cfg)
	return f
}

type envelope struct {
	Success bool            `json:"success"`
	Data    json.RawMessage `json:"data"`
	Error   string          `json:"error"`
	Errors  []string        `json:"errors"`
	Limit   *int            `json:"limit"`
	Offset  *int            `json:"offset"`
}

// get requests path (with query) and sends key in the L2LAUTH header when
// it is not empty.
func (f *fixture) get(t *testing.T, path, key string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, f.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return f.do(t, req, key)
}

// do sends req with key in the L2LAUTH header when it is not empty.
func (f *fixture) do(t *testing.T, req *http.Request, key string) (int, http.Header, []byte) {
	t.Helper()
	if key != "" {
		req.Header.Set("L2LAUTH", key)
	}
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, body
}

func (f *fixture) getJSON(t *testing.T, path, key string, wantStatus int) envelope {
	t.Helper()
	status, _, body := f.get(t, path, key)
	if status != wantStatus {
		t.Fatalf("GET %s: status %d, want %d: %s", path, status, wantStatus, body)
	}
	var env envelope
	if err := json.Unmarshal(body, &env); err != nil {
		t.Fatalf("GET %s: %v: %s", path, err, body)
	}
	return env
}

func records(t *testing.T, env envelope) []map[string]any {
	t.Helper()
	if !env.Success {
		t.Fatalf("success=false: %s", env.Error)
	}
	var out []map[string]any
	dec := json.NewDecoder(bytes.NewReader(env.Data))
	dec.UseNumber()
	if err := dec.Decode(&out); err != nil {
		t.Fatalf("data is not a list of records: %v: %s", err, env.Data)
	}
	return out
}

func idOf(t *testing.T, rec map[string]any) uint64 {
	t.Helper()
	n, ok := rec["id"].(json.Number)
	if !ok {
		t.Fatalf("record without a numeric id: %v", rec)
	}
	id, err := strconv.ParseUint(n.String(), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestQueryAPI(t *testing.T) {
	f := newFixture(t)

	t.Run("auth header and argument", func(t *testing.T) {
		byHeader := records(t, f.getJSON(t, "/api/1.0/parts/", f.keyA, http.StatusOK))
		byArg := records(t, f.getJSON(t, "/api/1.0/parts/?auth="+f.keyA, "", http.StatusOK))
		if len(byHeader) != partsOfA || len(byArg) != partsOfA {
			t.Fatalf("records by header %d, by argument %d, want %d", len(byHeader), len(byArg), partsOfA)
		}
	})

	t.Run("unauthorized", func(t *testing.T) {
		unknown, _, _ := auth.NewKey()
		for name, path := range map[string]string{
			"missing":   "/api/1.0/parts/",
			"unknown":   "/api/1.0/parts/?auth=" + unknown,
			"malformed": "/api/1.0/parts/?auth=hello",
			"bad area":  "/api/1.0/nothing/?auth=hello",
		} {
			status, hdr, body := f.get(t, path, "")
			if status != http.StatusUnauthorized {
				t.Errorf("%s: status %d: %s", name, status, body)
			}
			var env map[string]any
			if err := json.Unmarshal(body, &env); err != nil || env["success"] != false || env["error"] == "" || len(env) != 2 {
				t.Errorf("%s: body %s is not {success: false, error}", name, body)
			}
			if !strings.HasPrefix(hdr.Get("Content-Type"), "application/json") {
				t.Errorf("%s: content type %q", name, hdr.Get("Content-Type"))
			}
		}
		env := f.getJSON(t, "/api/1.0/parts/", f.keyIngest, http.StatusForbidden)
		if env.Success || !strings.Contains(env.Error, "read scope") {
			t.Errorf("key without read scope: %+v", env)
		}
	})

	t.Run("list and single record", func(t *testing.T) {
		env := f.getJSON(t, "/api/1.0/parts/?limit=2", f.keyA, http.StatusOK)
		list := records(t, env)
		if env.Limit == nil || *env.Limit != 2 || env.Offset == nil || *env.Offset != 0 || len(list) != 2 {
			t.Fatalf("list: limit %v offset %v, %d records", env.Limit, env.Offset, len(list))
		}
		id := f.partsA[4] // a scrap part: no cycle time
		one := f.getJSON(t, "/api/1.0/parts/"+strconv.FormatUint(id, 10)+"/", f.keyA, http.StatusOK)
		if one.Limit != nil || one.Offset != nil {
			t.Errorf("single record carries limit/offset")
		}
		var rec map[string]any
		if err := json.Unmarshal(one.Data, &rec); err != nil {
			t.Fatalf("single record data: %v: %s", err, one.Data)
		}
		rec4 := partsBase.Add(4 * time.Second)
		want := map[string]any{
			"id": float64(id), "site": 1.0, "externalid": demo.LineExternalID, "location": 1.0,
			"location_kind": "line", "product": 1.0, "product_code": demo.ProductCode,
			"product_resolution": "code", "product_reported": demo.ProductCode, "quantity": 2.0,
			"quality": "scrap", "reason": demo.ReasonCode, "cycle_time": nil,
			"recorded_at":        rec4.Format("2006-01-02 15:04:05.000"),
			"recorded_at_local":  rec4.Add(time.Hour).Format("2006-01-02T15:04:05.000") + "+01:00",
			"recorded_defaulted": false,
			"received_at":        rec4.Add(250 * time.Millisecond).Format("2006-01-02 15:04:05.000"),
		}
		for k, v := range want {
			if rec[k] != v {
				t.Errorf("%s = %#v, want %#v", k, rec[k], v)
			}
		}
		if _, err := uuid.Parse(rec["event_id"].(string)); err != nil {
			t.Errorf("event_id %v: %v", rec["event_id"], err)
		}
		if _, err := time.Parse("2006-01-02 15:04:05.000", rec["stored_at"].(string)); err != nil {
			t.Errorf("stored_at %v: %v", rec["stored_at"], err)
		}
		if rec["active"] != true {
			t.Errorf("active %v", rec["active"])
		}
		if len(rec) != len(want)+3 {
			t.Errorf("record has %d fields, want %d: %v", len(rec), len(want)+3, rec)
		}
		noSlash := f.getJSON(t, "/api/1.0/parts/"+strconv.FormatUint(id, 10), f.keyA, http.StatusOK)
		if !bytes.Equal(noSlash.Data, one.Data) {
			t.Errorf("without trailing slash: %s", noSlash.Data)
		}
		withCycle := f.getJSON(t, "/api/1.0/parts/"+strconv.FormatUint(f.partsA[0], 10)+"/?fields=cycle_time", f.keyA, http.StatusOK)
		if string(withCycle.Data) != `{"cycle_time":45.5}` {
			t.Errorf("fields=cycle_time: %s", withCycle.Data)
		}
		micro := f.getJSON(t, "/api/1.0/parts/"+strconv.FormatUint(f.partsA[0], 10)+"/?fields=recorded_at,recorded_at_local&l2lfmt_microseconds=true", f.keyA, http.StatusOK)
		if string(micro.Data) != `{"recorded_at":"2024-01-15 10:00:00.123000","recorded_at_local":"2024-01-15T11:00:00.123000+01:00"}` {
			t.Errorf("microseconds: %s", micro.Data)
		}
	})

	t.Run("paging returns every record once", func(t *testing.T) {
		for _, limit := range []int{1, 5, 7, 23, 100} {
			seen := map[uint64]int{}
			offset, pages := 0, 0
			for {
				pages++
				if pages > partsOfA+2 {
					t.Fatalf("limit %d: paging does not end", limit)
				}
				env := f.getJSON(t, "/api/1.0/parts/?limit="+strconv.Itoa(limit)+"&offset="+strconv.Itoa(offset), f.keyA, http.StatusOK)
				page := records(t, env)
				if *env.Limit != limit || *env.Offset != offset {
					t.Fatalf("limit %d offset %d: answer says %d/%d", limit, offset, *env.Limit, *env.Offset)
				}
				for _, rec := range page {
					seen[idOf(t, rec)]++
				}
				offset += len(page)
				if len(page) < limit {
					break
				}
			}
			if len(seen) != partsOfA {
				t.Errorf("limit %d: %d distinct records, want %d", limit, len(seen), partsOfA)
			}
			for _, id := range f.partsA {
				if seen[id] != 1 {
					t.Errorf("limit %d: record %d seen %d times", limit, id, seen[id])
				}
			}
		}
	})

	t.Run("validation failures", func(t *testing.T) {
		for query, want := range map[string]string{
			"limit=2001":               "limit 2001 is above the maximum 2000",
			"offset=-1":                "offset -1 is negative",
			"color=red":                `unknown field "color"`,
			"quantity__in=1":           `unknown operator "in"`,
			"quantity=x":               `quantity: value "x" is not a whole number`,
			"order_by=-color":          `order_by: unknown field "color"`,
			"fields=id,color":          `fields: unknown field "color"`,
			"cycle_time__isnull=maybe": `value "maybe" is not True or False`,
		} {
			env := f.getJSON(t, "/api/1.0/parts/?"+query, f.keyA, http.StatusOK)
			if env.Success || !strings.Contains(env.Error, want) || len(env.Errors) == 0 || env.Data != nil {
				t.Errorf("%s: %+v, want an error containing %q", query, env, want)
			}
		}
	})

	t.Run("order and filter", func(t *testing.T) {
		desc := records(t, f.getJSON(t, "/api/1.0/parts/?order_by=-id", f.keyA, http.StatusOK))
		for i := 1; i < len(desc); i++ {
			if idOf(t, desc[i-1]) <= idOf(t, desc[i]) {
				t.Fatalf("order_by=-id: %d before %d", idOf(t, desc[i-1]), idOf(t, desc[i]))
			}
		}
		byTime := records(t, f.getJSON(t, "/api/1.0/parts/?order_by=-recorded_at&fields=id,recorded_at&limit=3", f.keyA, http.StatusOK))
		if idOf(t, byTime[0]) != f.partsA[partsOfA-1] {
			t.Errorf("order_by=-recorded_at starts with %d", idOf(t, byTime[0]))
		}
		scrap := records(t, f.getJSON(t, "/api/1.0/parts/?quality=scrap", f.keyA, http.StatusOK))
		if len(scrap) != 4 { // i = 4, 9, 14, 19
			t.Errorf("quality=scrap: %d records", len(scrap))
		}
		for _, rec := range scrap {
			if rec["quality"] != "scrap" {
				t.Errorf("quality=scrap returned %v", rec)
			}
		}
		since := partsBase.Add(20 * time.Second).Format("2006-01-02T15:04:05.000")
		late := records(t, f.getJSON(t, "/api/1.0/parts/?recorded_at__gte="+since+"&cycle_time__isnull=False", f.keyA, http.StatusOK))
		if len(late) != 3 {
			t.Errorf("recorded_at__gte: %d records, want 3", len(late))
		}
	})

	t.Run("other sites are invisible", func(t *testing.T) {
		hidden := strconv.FormatUint(f.partsB[0], 10)
		missing := strconv.FormatUint(f.partsB[len(f.partsB)-1]+1000, 10)
		s1, _, b1 := f.get(t, "/api/1.0/parts/"+hidden+"/", f.keyA)
		s2, _, b2 := f.get(t, "/api/1.0/parts/"+missing+"/", f.keyA)
		if s1 != http.StatusNotFound || s1 != s2 || string(b1) != strings.ReplaceAll(string(b2), missing, hidden) {
			t.Errorf("hidden record: %d %s; missing record: %d %s", s1, b1, s2, b2)
		}
		if n := len(records(t, f.getJSON(t, "/api/1.0/parts/?site=2", f.keyA, http.StatusOK))); n != 0 {
			t.Errorf("site=2 for a site-1 key: %d records", n)
		}
		b := records(t, f.getJSON(t, "/api/1.0/parts/", f.keyB, http.StatusOK))
		if len(b) != partsOfB {
			t.Errorf("site-2 key sees %d parts, want %d", len(b), partsOfB)
		}
		one := f.getJSON(t, "/api/1.0/parts/"+hidden+"/?fields=recorded_at_local", f.keyB, http.StatusOK)
		if !strings.HasSuffix(strings.Trim(string(one.Data), `"}`), "-06:00") {
			t.Errorf("site 2 local time not in Chicago: %s", one.Data)
		}
		sites := records(t, f.getJSON(t, "/api/1.0/sites/", f.keyA, http.StatusOK))
		if len(sites) != 1 || idOf(t, sites[0]) != 1 {
			t.Errorf("sites for a site-1 key: %v", sites)
		}
		f.getJSON(t, "/api/1.0/sites/2/", f.keyA, http.StatusNotFound)
	})

	t.Run("master data areas", func(t *testing.T) {
		site := f.getJSON(t, "/api/1.0/sites/1/", f.keyA, http.StatusOK)
		var rec map[string]any
		_ = json.Unmarshal(site.Data, &rec)
		if rec["timezone"] != demo.SiteTimezone || rec["site"] != 1.0 || rec["createdby"] != "seed" {
			t.Errorf("site 1: %s", site.Data)
		}
		if _, err := time.Parse("2006-01-02 15:04:05.000", rec["created"].(string)); err != nil {
			t.Errorf("created: %v", err)
		}
		products := records(t, f.getJSON(t, "/api/1.0/products/?order_by=code", f.keyA, http.StatusOK))
		if len(products) != 2 || products[0]["code"] != demo.FallbackCode || products[0]["fallback"] != true ||
			products[1]["ideal_cycle_time"] != json.Number("45.0") {
			t.Errorf("products: %v", products)
		}
		lines := records(t, f.getJSON(t, "/api/1.0/lines/?externalid=line_1", f.keyA, http.StatusOK))
		if len(lines) != 1 || lines[0]["code"] != "LINE1" {
			t.Errorf("lines: %v", lines)
		}
		env := f.getJSON(t, "/api/1.0/widgets/", f.keyA, http.StatusNotFound)
		if env.Success || !strings.Contains(env.Error, "widgets") {
			t.Errorf("unknown area: %+v", env)
		}
	})

	t.Run("xml", func(t *testing.T) {
		status, hdr, body := f.get(t, "/api/1.0/sites/?format=xml", f.keyA)
		want := `<?xml version="1.0" encoding="utf-8"?>` + "\n" + `<response><success>True</success><data><resource><id>1</id><description>Demo Plant</description><timezone>Europe/Berlin</timezone><site>1</site><test_site>True</test_site><active>True</active><created>`
		if status != http.StatusOK || !bytes.HasPrefix(body, []byte(want)) ||
			!bytes.HasSuffix(body, []byte(`<lastupdatedby>seed</lastupdatedby></resource></data><limit>100</limit><offset>0</offset></response>`)) {
			t.Errorf("sites as xml: %d %s", status, body)
		}
		if !strings.HasPrefix(hdr.Get("Content-Type"), "application/xml") {
			t.Errorf("content type %q", hdr.Get("Content-Type"))
		}
		var doc struct {
			XMLName xml.Name `xml:"response"`
			Success string   `xml:"success"`
			Data    struct {
				CycleTime string `xml:"cycle_time"`
				Reason    string `xml:"reason"`
				Quantity  int    `xml:"quantity"`
			} `xml:"data"`
		}
		status, _, body = f.get(t, "/api/1.0/parts/"+strconv.FormatUint(f.partsA[4], 10)+"/?format=xml", f.keyA)
		if err := xml.Unmarshal(body, &doc); err != nil || status != http.StatusOK {
			t.Fatalf("single record as xml: %d %v %s", status, err, body)
		}
		if doc.Success != "True" || doc.Data.CycleTime != "None" || doc.Data.Reason != demo.ReasonCode || doc.Data.Quantity != 2 {
			t.Errorf("single record as xml: %+v", doc)
		}
		status, _, body = f.get(t, "/api/1.0/parts/?format=xml", "")
		if status != http.StatusUnauthorized || !bytes.Contains(body, []byte("<success>False</success><error>")) {
			t.Errorf("401 as xml: %d %s", status, body)
		}
	})

	t.Run("health and metrics", func(t *testing.T) {
		for _, p := range []string{"/healthz", "/readyz"} {
			if status, _, body := f.get(t, p, ""); status != http.StatusOK {
				t.Errorf("%s: %d %s", p, status, body)
			}
		}
		for _, p := range []string{"/metrics", "/debug/pprof/"} {
			if status, _, body := f.get(t, p, ""); status != http.StatusNotFound {
				t.Errorf("%s on the public port: %d %.100s", p, status, body)
			}
		}
		resp, err := http.Get(f.admin.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		status := resp.StatusCode
		for _, m := range []string{
			`takt_queryapi_requests_total{area="parts",outcome="ok"}`,
			`takt_queryapi_requests_total{area="parts",outcome="invalid"}`,
			`takt_queryapi_requests_total{area="unknown",outcome="unauthorized"}`,
			"takt_queryapi_request_duration_seconds_bucket",
			`takt_queryapi_records_returned_total{area="parts"}`,
			`takt_queryapi_clickhouse_read_rows_total{area="parts"}`,
			`takt_queryapi_clickhouse_read_bytes_total{area="parts"}`,
			"takt_queryapi_http_requests_total",
			"takt_queryapi_auth_cache_hits_total",
		} {
			if status != http.StatusOK || !bytes.Contains(body, []byte(m)) {
				t.Errorf("/metrics lacks %s", m)
			}
		}
		// Per key: by its id, never the key or its prefix.
		if !regexp.MustCompile(`(?m)^takt_queryapi_key_requests_total\{key_id="[1-9][0-9]*",outcome="ok"\} [1-9]`).Match(body) ||
			!regexp.MustCompile(`(?m)^takt_queryapi_key_requests_total\{key_id="[1-9][0-9]*",outcome="invalid"\} [1-9]`).Match(body) {
			t.Errorf("/metrics lacks the per-key counts of ok and invalid requests")
		}
		if bytes.Contains(body, []byte(f.keyA)) || bytes.Contains(body, []byte(auth.Prefix(f.keyA))) {
			t.Errorf("/metrics shows an API key")
		}
		if status, _, body := f.get(t, "/api/1.0/parts/", ""); status != http.StatusUnauthorized {
			t.Errorf("post-check: %d %s", status, body)
		}
		req, _ := http.NewRequest(http.MethodDelete, f.srv.URL+"/api/1.0/parts/1/?auth="+f.keyA, nil)
		resp, err = f.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("DELETE: %d", resp.StatusCode)
		}
	})
}

// TestRun starts the service as the binary does, checks that it answers,
// and that it stops cleanly when its context ends.
func TestRun(t *testing.T) {
	chCfg := testenv.ClickHouseConfig(t)
	stack := testenv.Stack(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	var env config.Env
	cfg := ConfigFromEnv(&env)
	cfg.Addr, cfg.ClickHouse, cfg.RedisAddr, cfg.RedisPrefix = addr, chCfg, stack.Redis, testenv.Name("takt-test-")+":"
	cfg.AdminAddr = testenv.FreeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, testenv.Logger(t)) }()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("Run did not stop")
		}
	}()

	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("service not ready: %v", err)
		}
		select {
		case err := <-done:
			t.Fatalf("Run ended early: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	resp, err := http.Get("http://" + addr + "/api/1.0/parts/?" + url.Values{"auth": {"nope"}}.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("bad key: %d", resp.StatusCode)
	}
	// The admin listener has the metrics, the public one does not.
	for _, c := range []struct {
		url, want string
		code      int
	}{
		{"http://" + cfg.AdminAddr + "/readyz", `{"status":"ok"}`, http.StatusOK},
		{"http://" + cfg.AdminAddr + "/metrics", "takt_queryapi_http_requests_total", http.StatusOK},
		{"http://" + addr + "/metrics", "", http.StatusNotFound},
	} {
		resp, err := http.Get(c.url)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.code || !bytes.Contains(b, []byte(c.want)) {
			t.Errorf("%s: %d %.200s; want %d with %q", c.url, resp.StatusCode, b, c.code, c.want)
		}
	}
}
