package loadtest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseProcStat(t *testing.T) {
	// Fields after the command: state ppid pgrp session tty_nr tpgid
	// flags minflt cminflt majflt cmajflt utime stime cutime cstime ...
	rest := " S 1 16683 16683 0 -1 4194560 981234 0 12 0 4521 1377 7 3 20 0 32 0 9912 2203193344 301245 18446744073709551615"
	tests := []struct {
		name, in string
		want     uint64
		bad      bool
	}{
		{name: "plain", in: "16683 (clickhouse-serv)" + rest, want: 4521 + 1377},
		{name: "spaces and parentheses in the command", in: "42 (a) b (c)) d)" + rest, want: 4521 + 1377},
		{name: "newline at the end", in: "7 (broker)" + rest + "\n", want: 4521 + 1377},
		{name: "no command", in: "7 broker" + rest, bad: true},
		{name: "cut short", in: "7 (broker) S 1 2 3 4 5 6 7 8 9 10 11", bad: true},
		{name: "utime not a number", in: "7 (broker) S 1 2 3 4 5 6 7 8 9 10 x 12 13", bad: true},
		{name: "stime negative", in: "7 (broker) S 1 2 3 4 5 6 7 8 9 10 11 -1 13", bad: true},
		{name: "empty", in: "", bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseProcStat([]byte(tt.in))
			if tt.bad {
				if err == nil {
					t.Fatalf("parseProcStat(%q) = %d, want an error", tt.in, got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("parseProcStat(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestParseMachineStat(t *testing.T) {
	tests := []struct {
		name, in string
		want     uint64
		bad      bool
	}{
		{
			name: "busy is user nice system irq softirq steal",
			in: "cpu  1000 20 300 90000 400 5 60 7 0 0\ncpu0 500 10 150 45000 200 2 30 3 0 0\n" +
				"intr 1 2 3\nctxt 99\n",
			want: 1000 + 20 + 300 + 5 + 60 + 7,
		},
		{name: "old kernel without guest columns", in: "cpu  1 2 3 4 5 6 7 8\n", want: 1 + 2 + 3 + 6 + 7 + 8},
		{name: "per-core lines only", in: "cpu0 1 2 3 4 5 6 7 8 0 0\n", bad: true},
		{name: "short cpu line", in: "cpu  1 2 3 4\n", bad: true},
		{name: "garbage", in: "cpu  1 2 x 4 5 6 7 8 0 0\n", bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseMachineStat([]byte(tt.in))
			if tt.bad {
				if err == nil {
					t.Fatalf("parseMachineStat(%q) = %d, want an error", tt.in, got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("parseMachineStat(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
			}
		})
	}
}

// The live files of this machine parse, and a process that is gone is
// reported as not measured rather than as zero.
func TestCPUMeterLive(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc: not Linux")
	}
	self := Proc{Name: "self", PID: os.Getpid()}
	m, err := StartCPU([]Proc{self})
	if err != nil {
		t.Fatal(err)
	}
	u := m.Stop(1000)
	if len(u.Procs) != 1 || u.Procs[0].Error != "" || u.Machine.Error != "" {
		t.Fatalf("stop = %+v, want the process and the machine measured", u)
	}
	if u.Procs[0].Seconds > u.Machine.Seconds+0.01 || u.Other.Seconds > u.Machine.Seconds {
		t.Fatalf("stop = %+v: a part larger than the machine", u)
	}
	m.procs = append(m.procs, Proc{Name: "gone", PID: 1 << 30})
	m.start = append(m.start, 0)
	u = m.Stop(1000)
	if u.Procs[1].Error == "" {
		t.Fatalf("a process that does not exist was measured: %+v", u.Procs[1])
	}
	if !strings.Contains(u.line(), "gone ?") {
		t.Fatalf("line %q does not mark the unmeasured process", u.line())
	}
}

func TestReadPIDDir(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{"broker": "16749\n", "processor": "x\n", "zero": "0"} {
		if err := os.WriteFile(filepath.Join(dir, name+".pid"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := ReadPIDDir(dir, "broker")
	if err != nil || len(got) != 1 || got[0] != (Proc{Name: "broker", PID: 16749}) {
		t.Fatalf("ReadPIDDir(broker) = %v, %v", got, err)
	}
	for _, name := range []string{"processor", "zero", "missing"} {
		if got, err := ReadPIDDir(dir, "broker", name); err == nil {
			t.Errorf("ReadPIDDir(%s) = %v, want an error", name, got)
		}
	}
}
