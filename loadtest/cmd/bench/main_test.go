package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A server that ends during a run is told apart from one that runs, with
// how it ended and where its output is.
func TestProcEnded(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "server")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\nexec sleep 600\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "server.log")
	p, err := start(bin, nil, logPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.cmd.Process.Kill(); <-p.exited })
	if err := p.ended(); err != nil {
		t.Fatalf("a running server: %v", err)
	}
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-p.exited
	err = p.ended()
	if err == nil {
		t.Fatal("a server that was killed: no error")
	}
	for _, want := range []string{"server ended", "killed", logPath} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

// The count of stored parts comes from the stack's ClickHouse, and the
// report's header says it.
func TestStoredParts(t *testing.T) {
	for n, want := range map[uint64]string{812: "812", 1500: "1.5k", 25_300_000: "25.3M", 100_000_000: "100M"} {
		if got := humanCount(n); got != want {
			t.Errorf("humanCount(%d) = %q, want %q", n, got, want)
		}
	}
	if testing.Short() {
		return
	}
	base := os.Getenv("TAKT_CLICKHOUSE_HTTP")
	if base == "" {
		base = "http://127.0.0.1:18123"
	}
	if _, err := storedParts(t.Context(), base, "no_such_database_here"); err == nil {
		t.Error("a database without parts counted")
	}
	if _, err := storedParts(t.Context(), base, "takt"); err != nil {
		t.Errorf("the local stack's parts: %v", err)
	}
	r := &Report{StoredParts: 100_000_000, StoredPartsOK: true}
	if md := markdown(r); !strings.Contains(md, "parts stored when the bench began: 100000000 (100M)") {
		t.Errorf("report header without the stored parts:\n%s", md[:min(len(md), 400)])
	}
}
