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
