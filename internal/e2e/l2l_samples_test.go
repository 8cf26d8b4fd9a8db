package e2e

// Leading2Lean's public sample clients, run as they are published: the
// files under testdata/les-python3 and testdata/les-go are copies of
// github.com/leading2lean/les-python3 (api/main.py, commit 429a17c) and
// github.com/leading2lean/les-go (main.go, commit bc89001), MIT licensed,
// byte for byte. Only their configuration differs: the server, site, user
// and key on their command lines, the certificate authority of the query
// API's HTTPS listener (REQUESTS_CA_BUNDLE, SSL_CERT_FILE) and the time
// zone of their clock (the site's, as for a client at the site).

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/takt/takt/internal/demo"
)

// sampleEnv is the environment of a sample client process.
func sampleEnv(p *pipeline) []string {
	return append(os.Environ(), "REQUESTS_CA_BUNDLE="+p.caFile, "SSL_CERT_FILE="+p.caFile, "TZ="+demo.SiteTimezone)
}

// runSample runs cmd with a time limit and fails the test unless it exits
// 0 after printing each of steps, in order.
func runSample(t *testing.T, cmd *exec.Cmd, steps []string) {
	t.Helper()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
	}
	rest := string(out)
	for _, s := range steps {
		i := strings.Index(rest, s+"\n")
		if i < 0 {
			t.Fatalf("%q missing (or out of order) in the output:\n%s", s, out)
		}
		rest = rest[i+len(s):]
	}
	t.Logf("%s:\n%s", filepath.Base(cmd.Args[0]), out)
}

// python finds a python3 that has the requests library. Outside CI, a
// machine without them skips the Python sample, saying so; in CI (where
// .ci/run installs python3-requests) their absence fails the test.
func python(t *testing.T) string {
	t.Helper()
	var err error
	for _, name := range []string{"python3", "/usr/bin/python3"} {
		var py string
		py, err = exec.LookPath(name)
		if err == nil {
			err = exec.Command(py, "-c", "import requests").Run()
		}
		if err == nil {
			return py
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("python3 with requests is needed for Leading2Lean's Python sample: %v", err)
	}
	t.Skipf("SKIPPED: Leading2Lean's Python sample needs python3 with requests (Debian: python3-requests): %v", err)
	return ""
}

func TestLeading2LeanPublicSamples(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	// Build the Go sample first: the pipeline need not wait for it.
	goBin := filepath.Join(t.TempDir(), "les-go")
	src, err := os.ReadFile("testdata/les-go/main.go")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.go"), src, 0o644); err != nil {
		t.Fatal(err)
	}
	build := exec.Command("go", "build", "-o", goBin, "main.go")
	build.Dir = dir
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build of the Go sample: %v\n%s", err, out)
	}
	py := python(t)
	script, err := filepath.Abs("testdata/les-python3/main.py")
	if err != nil {
		t.Fatal(err)
	}

	p := startWith(t, options{tls: true})
	site := strconv.Itoa(demo.SiteID)
	c := &l2lClient{t: t, base: p.query, key: p.apiKey, site: site}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	py3 := exec.CommandContext(ctx, py, script, p.queryTLS, site, demo.Username, p.apiKey)
	py3.Env = sampleEnv(p)
	runSample(t, py3, []string{"Using site: Demo Plant", "Using area: ASSEMBLY", "Using line: " + demo.LineCode,
		"Using machine: " + demo.MachineCode, "Using Dispatch Type: " + demo.DispatchTypeCode, "User clocked in",
		"User clocked out", "Created backdated clock in", "Set machine cycle count", "Incremented machine cycle count",
		"Created open Dispatch", "Closed open Dispatch", "Created backdated Dispatch", "Recorded Pitch details",
		"Retrieved Daily summary for line"})

	gos := exec.CommandContext(ctx, goBin, "-server", p.queryTLS, "-site", site, "-user", demo.Username, "-apikey", p.apiKey)
	gos.Env = sampleEnv(p)
	runSample(t, gos, []string{"Using site: Demo Plant", "Using area: ASSEMBLY", "Using line: " + demo.LineCode,
		"Using machine: " + demo.MachineCode, "Using dispatch type: " + demo.DispatchTypeCode, "User clocked in",
		"User clocked out", "Created backdated clock in", "Set machine cycle count", "Incremented machine cycle count",
		"Created open Dispatch", "Closed open Dispatch", "Created backdated Dispatch", "record_details Pitch details",
		"Retrieved Daily summary for line"})

	// What they wrote. Each sample: a clock session now and one a week
	// ago, both closed; an open dispatch closed and one added; the
	// counter set to 832 and incremented by 5, which is 5 parts of the
	// machine.
	sessions := list(t, c.call("GET", "clocksessions/", map[string]string{"limit": "100"}))
	open := 0
	for _, s := range sessions {
		if s["open"] != false {
			open++
		}
	}
	if len(sessions) != 4 || open != 0 {
		t.Errorf("clock sessions of both samples (want 4, all closed): %v", sessions)
	}
	dispatches := list(t, c.call("GET", "dispatches/", map[string]string{"limit": "100"}))
	if len(dispatches) != 4 {
		t.Errorf("dispatches of both samples (want 4): %v", dispatches)
	}
	for _, d := range dispatches {
		if d["status"] != "closed" || d["machinecode"] != demo.MachineCode {
			t.Errorf("dispatch of a sample: %v", d)
		}
	}
	machines := list(t, c.call("GET", "machines/", map[string]string{"code": demo.MachineCode}))
	if len(machines) != 1 || machines[0]["cyclecount"] != 837.0 {
		t.Errorf("the machine's cycle count after the Go sample's set and increment: %v", machines)
	}
	parts := waitParts(t, p, demo.MachineExternalID, 10)
	var sum float64
	for _, part := range parts {
		sum += part["quantity"].(float64)
	}
	if len(parts) != 2 || sum != 10 {
		t.Errorf("parts of the two increments (want 2 events of 5): %v", parts)
	}

	// record_details: what the details say is what reached ClickHouse as
	// parts of the line, once.
	details := list(t, c.call("GET", "pitchdetails/", map[string]string{"limit": "100"}))
	var want = map[string]float64{}
	for _, d := range details {
		want["good"] += d["actual"].(float64)
		want["scrap"] += d["scrap"].(float64)
	}
	if len(details) != 2 || want["good"] < 20 || want["scrap"] < 10 {
		t.Fatalf("pitch details of both samples (want 2): %v", details)
	}
	lineParts := waitParts(t, p, demo.LineExternalID, want["good"]+want["scrap"])
	got := map[string]float64{}
	for _, part := range lineParts {
		got[part["quality"].(string)] += part["quantity"].(float64)
	}
	if got["good"] != want["good"] || got["scrap"] != want["scrap"] || len(got) != 2 {
		t.Errorf("parts of the line %v, want %v (the details: %v)", got, want, details)
	}
}
