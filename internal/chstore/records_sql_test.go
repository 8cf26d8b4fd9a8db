package chstore

import (
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/takt/takt/internal/l2l"
)

func recordsQuery(t *testing.T, a *RecordArea, raw string) l2l.Query {
	t.Helper()
	v, err := url.ParseQuery(raw)
	if err != nil {
		t.Fatal(err)
	}
	q, err := l2l.Parse(v, a.Schema())
	if err != nil {
		t.Fatalf("parse %q: %v", raw, err)
	}
	return q
}

func TestRecordsSQL(t *testing.T) {
	parts, _ := RecordAreaByName("parts")
	sites, _ := RecordAreaByName("sites")
	id := uint64(42)
	tests := []struct {
		name     string
		area     *RecordArea
		query    string
		sites    []uint64
		id       *uint64
		wantSQL  string
		wantArgs []any
	}{
		{
			name: "parts default", area: parts, query: "fields=id,cycle_time", sites: []uint64{1, 2},
			wantSQL: "SELECT toUInt64(site) AS _site, toUInt64(id) AS _id, toInt64(id) AS _c0, toNullable(toFloat64(cycle_time)) AS _c1 " +
				"FROM parts WHERE site IN ? ORDER BY order_ms, id LIMIT ? OFFSET ?",
			wantArgs: []any{clickhouse.GroupSet{Value: []any{uint64(1), uint64(2)}}, 100, 0},
		},
		{
			name: "parts default at the watermark", area: parts.WithWatermark(1700000000999), query: "fields=id&quality=good", sites: []uint64{1},
			wantSQL: "SELECT toUInt64(site) AS _site, toUInt64(id) AS _id, toInt64(id) AS _c0 " +
				"FROM parts WHERE site IN ? AND order_ms <= ? AND (toString(quality)) = ? ORDER BY order_ms, id LIMIT ? OFFSET ?",
			wantArgs: []any{clickhouse.GroupSet{Value: []any{uint64(1)}}, int64(1700000000999), "good", 100, 0},
		},
		{
			name: "parts in another order ignore the watermark", area: parts.WithWatermark(1700000000999), query: "fields=id&order_by=-id&limit=5",
			sites:    []uint64{1},
			wantSQL:  "SELECT toUInt64(site) AS _site, toUInt64(id) AS _id, toInt64(id) AS _c0 FROM parts WHERE site IN ? ORDER BY id DESC LIMIT ? OFFSET ?",
			wantArgs: []any{clickhouse.GroupSet{Value: []any{uint64(1)}}, 5, 0},
		},
		{
			name: "parts filters", area: parts,
			query: "fields=id&quality=scrap&recorded_at__gte=2016-05-05&cycle_time__isnull=True&quantity__lt=3&order_by=-recorded_at&limit=5&offset=10",
			sites: []uint64{1},
			wantSQL: "SELECT toUInt64(site) AS _site, toUInt64(id) AS _id, toInt64(id) AS _c0 FROM parts WHERE site IN ?" +
				" AND isNull(cycle_time) AND (toString(quality)) = ? AND (quantity) < ? AND (recorded_ms) >= ?" +
				" ORDER BY recorded_ms DESC, id LIMIT ? OFFSET ?",
			wantArgs: []any{clickhouse.GroupSet{Value: []any{uint64(1)}}, "scrap", int64(3),
				time.Date(2016, 5, 5, 0, 0, 0, 0, time.UTC).UnixMilli(), 5, 10},
		},
		{
			name: "sites by id", area: sites, query: "fields=id,created&description=x%27y&order_by=-id", sites: []uint64{1}, id: &id,
			wantSQL: "SELECT toUInt64(id) AS _site, toUInt64(id) AS _id, toInt64(id) AS _c0, toInt64(toInt64(toUInt32(created)) * 1000) AS _c1" +
				" FROM (SELECT * FROM sites FINAL) WHERE deleted = 0 AND id IN ? AND id = ? AND (description) = ?" +
				" ORDER BY id DESC LIMIT 1",
			wantArgs: []any{clickhouse.GroupSet{Value: []any{uint64(1)}}, uint64(42), "x'y"},
		},
		{
			name: "bool and isnull false", area: parts, query: "fields=id&recorded_defaulted=True&reason__isnull=False", sites: []uint64{3},
			wantSQL: "SELECT toUInt64(site) AS _site, toUInt64(id) AS _id, toInt64(id) AS _c0 FROM parts WHERE site IN ?" +
				" AND isNotNull(nullIf(reason, '')) AND (recorded_defaulted) = ? ORDER BY order_ms, id LIMIT ? OFFSET ?",
			wantArgs: []any{clickhouse.GroupSet{Value: []any{uint64(3)}}, uint8(1), 100, 0},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sql, args, err := recordsSQL(tt.area, recordsQuery(t, tt.area, tt.query), tt.sites, tt.id)
			if err != nil {
				t.Fatal(err)
			}
			if sql != tt.wantSQL {
				t.Errorf("sql\n got %s\nwant %s", sql, tt.wantSQL)
			}
			if !reflect.DeepEqual(args, tt.wantArgs) {
				t.Errorf("args\n got %#v\nwant %#v", args, tt.wantArgs)
			}
		})
	}
}

// TestRecordsSQLNeverInterpolates checks that request text reaches the
// statement only through arguments: whatever the values, the SQL text is
// the same as for harmless ones.
func TestRecordsSQLNeverInterpolates(t *testing.T) {
	parts, _ := RecordAreaByName("parts")
	evil := []string{"x' OR 1=1 --", `\'; DROP TABLE parts; --`, "?", "a\x00b", "'); SELECT 1 --"}
	clean, _, err := recordsSQL(parts, recordsQuery(t, parts, "externalid=a&product_code__gt=b"), []uint64{1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evil {
		v := url.Values{"externalid": {e}, "product_code__gt": {e}}
		q, err := l2l.Parse(v, parts.Schema())
		if err != nil {
			t.Fatal(err)
		}
		sql, args, err := recordsSQL(parts, q, []uint64{1}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if sql != clean {
			t.Errorf("value %q changed the statement:\n%s", e, sql)
		}
		if args[1] != e || args[2] != e {
			t.Errorf("value %q not bound as an argument: %#v", e, args)
		}
	}
}

func TestRecordsSQLRejectsForeignQueries(t *testing.T) {
	parts, _ := RecordAreaByName("parts")
	bad := []l2l.Query{
		{Limit: 1, OrderBy: []l2l.Order{{Field: "id"}}, Filters: []l2l.Filter{{Field: "nope", Value: "x"}}},
		{Limit: 1, OrderBy: []l2l.Order{{Field: "nope"}}},
		{Limit: 1, OrderBy: []l2l.Order{{Field: "id"}}, Filters: []l2l.Filter{{Field: "quantity", Op: "like", Value: int64(1)}}},
		{Limit: 1, OrderBy: []l2l.Order{{Field: "id"}}, Filters: []l2l.Filter{{Field: "quantity", Value: "1"}}},
		{Limit: 1, OrderBy: []l2l.Order{{Field: "id"}}, Filters: []l2l.Filter{{Field: "quantity", Op: l2l.OpIsNull, Value: "yes"}}},
	}
	for i, q := range bad {
		if sql, _, err := recordsSQL(parts, q, []uint64{1}, nil); err == nil {
			t.Errorf("query %d built: %s", i, sql)
		}
	}
}

// TestRecordAreaDefinitions: every area of record.Takt is read with
// expressions that hold no placeholder, and has an int field site.
func TestRecordAreaDefinitions(t *testing.T) {
	if got := RecordAreaNames(); !reflect.DeepEqual(got, []string{"apikeys", "areas", "clocksessions", "dispatches",
		"dispatchtypes", "lines", "machines", "parts", "pitchdetails", "pitches", "productcomponents", "productionperiods",
		"products", "reasons", "resourceshifts", "scrapcategory", "scrapdetail", "shifts", "sites", "users"}) {
		t.Fatalf("areas = %v", got)
	}
	for _, name := range RecordAreaNames() {
		a, _ := RecordAreaByName(name)
		for _, c := range a.cols {
			if strings.Contains(c.expr, "?") || c.expr == "" {
				t.Errorf("%s.%s: expression %q", name, c.field.Name, c.expr)
			}
		}
		if strings.Contains(a.from, "?") || strings.Contains(a.site, "?") {
			t.Errorf("%s: FROM or site with a placeholder", name)
		}
		f, ok := a.Schema().Field("site")
		if !ok || f.Type != l2l.Int {
			t.Errorf("%s: no int field site", name)
		}
	}
}

func TestSQLValue(t *testing.T) {
	day := time.Date(1969, 12, 31, 0, 0, 0, 0, time.UTC)
	v, err := sqlValue(l2l.Field{Name: "d", Type: l2l.Date}, day)
	if err != nil || v != int64(-1) {
		t.Fatalf("date before the epoch: %v, %v", v, err)
	}
	if _, err := sqlValue(l2l.Field{Name: "f", Type: l2l.Float}, int64(1)); err == nil {
		t.Fatal("int for a float field accepted")
	}
}
