package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
)

// The Grafana dashboard compose provisions (compose/grafana) is linted
// here: it must be well-formed, use only provisioned data sources, and
// graph only series the services export; compose's Prometheus must scrape
// the admin listeners compose gives the services.

const composeDir = "../../compose"

type grafanaTarget struct {
	RefID      string            `json:"refId"`
	Datasource grafanaDatasource `json:"datasource"`
	Expr       string            `json:"expr"`
	RawSQL     string            `json:"rawSql"`
}

type grafanaDatasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type grafanaPanel struct {
	ID         int               `json:"id"`
	Type       string            `json:"type"`
	Title      string            `json:"title"`
	Datasource grafanaDatasource `json:"datasource"`
	GridPos    struct{ H, W, X, Y int }
	Targets    []grafanaTarget `json:"targets"`
}

func readDashboard(t *testing.T) (uid string, panels []grafanaPanel) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(composeDir, "grafana", "dashboards", "takt.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UID    string         `json:"uid"`
		Title  string         `json:"title"`
		Panels []grafanaPanel `json:"panels"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	return d.UID, d.Panels
}

// dashboardMetrics returns the metric names the dashboard's PromQL uses,
// with the histogram suffixes taken off.
func dashboardMetrics(panels []grafanaPanel) []string {
	seen := map[string]bool{}
	for _, p := range panels {
		for _, tg := range p.Targets {
			for _, m := range regexp.MustCompile(`\btakt_[a-z0-9_]+`).FindAllString(tg.Expr, -1) {
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					if base, ok := strings.CutSuffix(m, suffix); ok && !strings.HasSuffix(m, "_total"+suffix) {
						m = base
						break
					}
				}
				seen[m] = true
			}
		}
	}
	var out []string
	for m := range seen {
		out = append(out, m)
	}
	slices.Sort(out)
	return out
}

func TestGrafanaDashboardWellFormed(t *testing.T) {
	uid, panels := readDashboard(t)
	if uid == "" || len(panels) == 0 {
		t.Fatalf("dashboard uid %q with %d panels", uid, len(panels))
	}
	b, err := os.ReadFile(filepath.Join(composeDir, "grafana", "provisioning", "datasources", "takt.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var prov struct {
		Datasources []struct {
			UID  string `yaml:"uid"`
			Type string `yaml:"type"`
		} `yaml:"datasources"`
	}
	if err := yaml.Unmarshal(b, &prov); err != nil {
		t.Fatalf("datasources: %v", err)
	}
	provisioned := map[grafanaDatasource]bool{}
	for _, ds := range prov.Datasources {
		provisioned[grafanaDatasource{Type: ds.Type, UID: ds.UID}] = true
	}
	ids := map[int]bool{}
	used := map[string]bool{}
	for _, p := range panels {
		if ids[p.ID] || p.ID <= 0 {
			t.Errorf("panel %q: id %d repeated or not positive", p.Title, p.ID)
		}
		ids[p.ID] = true
		if p.GridPos.W <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q: outside Grafana's 24 columns: %+v", p.Title, p.GridPos)
		}
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 || !provisioned[p.Datasource] {
			t.Errorf("panel %q: %d queries, data source %+v (provisioned: %v)", p.Title, len(p.Targets), p.Datasource, provisioned)
		}
		for _, tg := range p.Targets {
			used[tg.Datasource.UID] = true
			switch {
			case !provisioned[tg.Datasource]:
				t.Errorf("panel %q query %s: data source %+v is not provisioned", p.Title, tg.RefID, tg.Datasource)
			case tg.Datasource.Type == "prometheus" && !strings.Contains(tg.Expr, "takt_"):
				t.Errorf("panel %q query %s: %q graphs no Takt series", p.Title, tg.RefID, tg.Expr)
			case tg.Datasource.Type == "grafana-clickhouse-datasource" && !strings.Contains(tg.RawSQL, "$__timeFilter("):
				t.Errorf("panel %q query %s: SQL without the dashboard's time filter: %q", p.Title, tg.RefID, tg.RawSQL)
			}
		}
	}
	for _, ds := range prov.Datasources {
		if !used[ds.UID] {
			t.Errorf("data source %s is provisioned but no panel uses it", ds.UID)
		}
	}
	// The series are all on the dashboard.
	for _, want := range []string{"takt_processor_consumer_lag_records", "takt_processor_freshness_seconds",
		"takt_processor_insert_duration_seconds", "takt_processor_insert_rows", "takt_ingestor_produce_duration_seconds",
		"takt_ingestor_key_requests_total"} {
		if !slices.Contains(dashboardMetrics(panels), want) {
			t.Errorf("the dashboard does not graph %s", want)
		}
	}

	// Prometheus scrapes each service at the admin address compose gives it.
	b, err = os.ReadFile(filepath.Join(composeDir, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var compose struct {
		Services map[string]struct {
			Environment map[string]any `yaml:"environment"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(b, &compose); err != nil {
		t.Fatalf("compose: %v", err)
	}
	b, err = os.ReadFile(filepath.Join(composeDir, "prometheus", "prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var scrape struct {
		ScrapeConfigs []struct {
			Job           string `yaml:"job_name"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(b, &scrape); err != nil {
		t.Fatalf("prometheus.yml: %v", err)
	}
	targets := map[string]bool{}
	for _, sc := range scrape.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			for _, tg := range st.Targets {
				targets[tg] = true
			}
		}
	}
	for _, svc := range []string{"ingestor", "processor", "queryapi"} {
		addr, _ := compose.Services[svc].Environment["TAKT_ADMIN_ADDR"].(string)
		_, port, ok := strings.Cut(addr, ":")
		if !ok || !strings.HasPrefix(addr, "0.0.0.0:") {
			t.Errorf("compose: %s has TAKT_ADMIN_ADDR %q; Prometheus needs it on the compose network", svc, addr)
			continue
		}
		if !targets[svc+":"+port] {
			t.Errorf("prometheus.yml does not scrape %s:%s (targets %v)", svc, port, targets)
		}
	}
}

// TestGrafanaDashboardSeriesExist runs the pipeline, puts a little of
// everything through it, and checks that each series the dashboard graphs
// is on some service's /metrics.
func TestGrafanaDashboardSeriesExist(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs the local stack")
	}
	_, panels := readDashboard(t)
	p := start(t, "")
	if code, body := p.post(t, `{"part":{"external_id":"line_1","quantity":2}}`); code != http.StatusOK {
		t.Fatalf("process_part: %d %s", code, body)
	}
	if code, _ := p.post(t, `{"part":{"external_id":"no_such_line"}}`); code != http.StatusUnprocessableEntity {
		t.Fatalf("unknown location: %d, want 422", code)
	}
	req, _ := http.NewRequest(http.MethodPost, p.ingest+"/api/external/production/process_parts",
		strings.NewReader(`{"parts":[{"external_id":"line_1"}]}`))
	req.Header.Set("API-KEY", p.apiKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("process_parts: %d", resp.StatusCode)
	}
	waitFor(t, 30*time.Second, "2 part rows visible", func() bool {
		return len(p.parts(t, url.Values{"limit": {"10"}}).Data) == 2
	})

	exported := map[string]string{} // metric -> service
	for svc, base := range p.admin {
		resp, err := http.Get(base + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, m := range regexp.MustCompile(`(?m)^# TYPE (\S+) `).FindAllStringSubmatch(string(b), -1) {
			exported[m[1]] = svc
		}
	}
	for _, m := range dashboardMetrics(panels) {
		if exported[m] == "" {
			t.Errorf("the dashboard graphs %s, which no service exports", m)
		}
	}
}
