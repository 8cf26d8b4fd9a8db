package processor

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/takt/takt/internal/testenv"
	"github.com/takt/takt/internal/wire"
)

// buildProcessor builds the processor binary with the crash failpoint
// compiled in (-tags takt_failpoints), once per test run.
func buildProcessor(t testing.TB) string {
	t.Helper()
	return testenv.Binary(t, "github.com/takt/takt/processor/cmd/processor", "takt_failpoints")
}

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.RemoveBinaries()
	os.Exit(code)
}

// proc is a processor running as a child process.
type proc struct {
	t    testing.TB
	name string
	cmd  *exec.Cmd
	addr string
	log  string
	done chan struct{}
	err  error // valid after done
}

// startProc runs the processor binary against e's scratch world. env
// overrides the defaults set here (small batches, a short session).
func (e *itEnv) startProc(bin, name string, env map[string]string) *proc {
	e.t.Helper()
	vars := map[string]string{
		"TAKT_CLICKHOUSE_ADDR":          testenv.Join(e.ch.Addr),
		"TAKT_CLICKHOUSE_DB":            e.ch.Database,
		"TAKT_KAFKA_BROKERS":            testenv.Join(e.brokers),
		"TAKT_PARTS_TOPIC":              e.topic,
		"TAKT_DLQ_TOPIC":                e.dlq,
		"TAKT_CONSUMER_GROUP":           e.group,
		"TAKT_CONSUMER_SESSION_TIMEOUT": "6s",
		"TAKT_BATCH_ROWS":               "300",
		"TAKT_BATCH_INTERVAL":           "20ms",
		"TAKT_PROCESSOR_ADDR":           freeAddr(e.t),
		"TAKT_LOG_LEVEL":                "info",
	}
	if lvl := os.Getenv("TAKT_TEST_PROCESSOR_LOG_LEVEL"); lvl != "" {
		vars["TAKT_LOG_LEVEL"] = lvl
	}
	for k, v := range env {
		vars[k] = v
	}
	environ := testenv.Environ(vars)
	logPath := filepath.Join(e.t.TempDir(), name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		e.t.Fatal(err)
	}
	cmd := exec.Command(bin)
	cmd.Env = environ
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	p := &proc{t: e.t, name: name, cmd: cmd, addr: vars["TAKT_PROCESSOR_ADDR"], log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	e.t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if e.t.Failed() || os.Getenv("TAKT_TEST_PROCESSOR_LOGS") != "" {
			p.dumpLog(400)
		}
	})
	return p
}

func (p *proc) dumpLog(lines int) {
	b, _ := os.ReadFile(p.log)
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	p.t.Logf("--- last lines of %s:\n%s", p.name, strings.Join(all, "\n"))
}

// alive reports an error once the process has exited.
func (p *proc) alive() error {
	select {
	case <-p.done:
		return fmt.Errorf("%s exited: %v", p.name, p.err)
	default:
		return nil
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *proc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// stop sends SIGTERM and requires a clean exit.
func (p *proc) stop() {
	p.t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		p.t.Fatalf("%s did not stop within 60s of SIGTERM", p.name)
	}
	if p.err != nil {
		p.t.Fatalf("%s exited with %v", p.name, p.err)
	}
}

// waitKilledByFailpoint waits for the process to kill itself.
func (p *proc) waitKilledByFailpoint(timeout time.Duration) {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.t.Fatalf("%s did not reach its failpoint within %s", p.name, timeout)
	}
	var ee *exec.ExitError
	if !errors.As(p.err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		p.t.Fatalf("%s ended with %v, want killed by its failpoint", p.name, p.err)
	}
}

// waitLog waits until the process log contains s.
func (p *proc) waitLog(s string, timeout time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		b, _ := os.ReadFile(p.log)
		if bytes.Contains(b, []byte(s)) {
			return
		}
		if err := p.alive(); err != nil || time.Now().After(deadline) {
			p.t.Fatalf("%s: no %q in its log within %s (%v)", p.name, s, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// metric scrapes one series of the process's /metrics (0 when absent).
func (p *proc) metric(name string) float64 {
	p.t.Helper()
	v, err := p.tryMetric(name)
	if err != nil {
		p.t.Fatalf("%s: scrape: %v", p.name, err)
	}
	return v
}

// tryMetric is metric that reports a failed scrape (e.g. not listening
// yet) instead of failing the test.
func (p *proc) tryMetric(name string) (float64, error) {
	resp, err := http.Get("http://" + p.addr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	return 0, sc.Err()
}

// peakRSS returns the process's peak resident set size in KiB (VmHWM).
func (p *proc) peakRSS() int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return 0
}

// produceInBackground produces parts in small chunks so that a processor
// sees them arrive over time; wait blocks until all are acknowledged.
func (e *itEnv) produceInBackground(parts []wire.Part) (wait func()) {
	var wg sync.WaitGroup
	wg.Go(func() {
		for lo := 0; lo < len(parts); lo += 250 {
			e.produce(parts[lo:min(lo+250, len(parts))])
			time.Sleep(5 * time.Millisecond)
		}
	})
	return wg.Wait
}

// TestProcessorSurvivesKill is the crash test: the processor is killed
// with SIGKILL at several points, among them exactly between an insert
// and its commit (the failpoint), and restarted each time; ClickHouse must
// end with every part exactly once.
func TestProcessorSurvivesKill(t *testing.T) {
	bin := buildProcessor(t)
	e := newITEnv(t, 3)
	const wave = 4000
	waves := make([][]wire.Part, 5)
	for i := range waves {
		waves[i] = newParts(wave)
	}
	// Static membership: a restarted member takes its partitions back at
	// once instead of waiting out the dead one's session.
	static := map[string]string{"TAKT_CONSUMER_INSTANCE_ID": "kill-test"}
	with := func(kv ...string) map[string]string {
		m := map[string]string{"TAKT_CONSUMER_INSTANCE_ID": "kill-test"}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}

	// 1. Killed right after its 3rd insert, before that commit.
	p := e.startProc(bin, "p1", with("TAKT_FAILPOINT_CRASH_AFTER_INSERTS", "3"))
	e.produce(waves[0])
	p.waitKilledByFailpoint(30 * time.Second)
	if rows, _ := e.count(); rows == 0 {
		t.Fatal("nothing inserted before the failpoint")
	}

	// 2. Killed mid-stream, while a wave is still arriving.
	p = e.startProc(bin, "p2", static)
	wait := e.produceInBackground(waves[1])
	before, _ := e.count()
	e.waitRows(before+wave/2, 30*time.Second, p.alive)
	p.kill()
	wait()

	// 3. Killed right after its first insert.
	p = e.startProc(bin, "p3", with("TAKT_FAILPOINT_CRASH_AFTER_INSERTS", "1"))
	e.produce(waves[2])
	p.waitKilledByFailpoint(30 * time.Second)

	// 4. Killed early, probably before it wrote anything.
	p = e.startProc(bin, "p4", static)
	wait = e.produceInBackground(waves[3])
	p.waitLog("partition assigned", 30*time.Second)
	p.kill()
	wait()

	// 5. Runs to the end and stops cleanly.
	p = e.startProc(bin, "p5", static)
	e.produce(waves[4])
	e.waitRows(5*wave, 60*time.Second, p.alive)
	p.stop()

	e.assertExactly(5 * wave)
}

// TestProcessorTwoMembers runs two processors in one group: the second
// joins while parts flow (rebalance), the first leaves cleanly
// (rebalance), a third joins and the second is killed (its partitions move
// after its session times out). Every part must land exactly once.
func TestProcessorTwoMembers(t *testing.T) {
	bin := buildProcessor(t)
	e := newITEnv(t, 3)
	const wave = 3000
	var total uint64

	a := e.startProc(bin, "a", nil)
	wait := e.produceInBackground(newParts(wave))
	total += wave
	a.waitLog("partition assigned", 30*time.Second)
	wait()

	b := e.startProc(bin, "b", nil)
	b.waitLog("partition assigned", 30*time.Second)
	wait = e.produceInBackground(newParts(wave))
	total += wave
	wait()
	e.waitRows(total, 30*time.Second, a.alive)
	if a.metric("takt_processor_parts_inserted_total") == 0 || b.metric("takt_processor_parts_inserted_total") == 0 {
		t.Errorf("both members should have written: a %v, b %v",
			a.metric("takt_processor_parts_inserted_total"), b.metric("takt_processor_parts_inserted_total"))
	}

	// a leaves while parts arrive: its partitions move to b.
	wait = e.produceInBackground(newParts(wave))
	total += wave
	a.stop()
	wait()
	e.waitRows(total, 30*time.Second, b.alive)

	// c joins, then b dies without leaving.
	c := e.startProc(bin, "c", nil)
	c.waitLog("partition assigned", 30*time.Second)
	wait = e.produceInBackground(newParts(wave))
	total += wave
	b.kill()
	wait()
	e.waitRows(total, 60*time.Second, c.alive)
	c.stop()

	e.assertExactly(total)
}
