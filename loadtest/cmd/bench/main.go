// Command bench measures Takt on the running local stack (`make up`) in one
// go and writes bench/report.json and bench/report.md: single-part ingest
// next to a bare gin server at saturation, single-part ingest at a fixed
// 5,000 parts/s with verification, batch ingest at saturation with
// verification, the processor next to ClickHouse's Kafka table engine, and
// single-part MQTT next to single-part HTTP (at saturation, and MQTT at
// 5,000 parts/s with verification).
// See bench/README.md. `make bench` runs it.
//
// It builds and starts its own ingestor (from this tree, on
// 127.0.0.1:18180, MQTT on 127.0.0.1:18183, profiles on its admin listener 127.0.0.1:18190) and the bare server (127.0.0.1:18090) against
// the stack, so the figures are those of the code in the tree, whatever
// binary the stack runs. Everything is bounded: about four minutes.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/loadtest"
)

// The bench's own listeners; -port-offset moves them all (a bench against
// a second stack while another runs against the first).
var (
	ingestAddr = "127.0.0.1:18180"
	mqttAddr   = "127.0.0.1:18183"
	// ingestAdmin is the bench ingestor's admin listener (its profiles).
	ingestAdmin = "127.0.0.1:18190"
	bareAddr    = "127.0.0.1:18090"
)

// movePorts adds off to the port of each of the bench's listeners.
func movePorts(off int) {
	for _, a := range []*string{&ingestAddr, &mqttAddr, &ingestAdmin, &bareAddr} {
		host, port, _ := net.SplitHostPort(*a)
		n, _ := strconv.Atoi(port)
		*a = net.JoinHostPort(host, strconv.Itoa(n+off))
	}
}

// The MQTT figures' load: in flight at once, and over how many MQTT
// connections (HTTP uses one connection per request in flight).
const (
	mqttConcurrency = 128
	mqttConns       = 8
)

// Report is bench/report.json.
type Report struct {
	Date      string `json:"date"`
	Cores     int    `json:"cores"`
	GoVersion string `json:"go_version"`
	// StoredParts is how many parts the stack's parts table held when the
	// bench began (the cost of a part may grow with what is stored; a
	// stack filled by `growth -into` measures it at 100M parts).
	StoredParts   uint64 `json:"stored_parts"`
	StoredPartsOK bool   `json:"stored_parts_known"`
	// Saturation: closed loop at each concurrency; the best of each side.
	BareRuns      []*loadtest.Report `json:"bare_runs"`
	IngestRuns    []*loadtest.Report `json:"ingest_runs"`
	BareBest      float64            `json:"bare_requests_per_s"`
	IngestBest    float64            `json:"ingest_requests_per_s"`
	SaturationRat float64            `json:"ingest_vs_bare_ratio"`
	// Fixed rate: single-part at 5,000 parts/s with -verify.
	Fixed *loadtest.Report `json:"single_fixed_rate"`
	// Batch: 100 parts per call at saturation with -verify.
	Batch           *loadtest.Report          `json:"batch"`
	BatchEndToEnd   float64                   `json:"batch_end_to_end_parts_per_s"`
	Processor       *loadtest.ProcessorFigure `json:"processor"`
	ProcessorError  string                    `json:"processor_error,omitempty"`
	ProfileTop      string                    `json:"ingest_cpu_profile_top,omitempty"`
	BatchProfileTop string                    `json:"batch_cpu_profile_top,omitempty"`
	// MQTT: single-part over HTTP and over MQTT, closed loop, one after
	// the other at the same concurrency; then MQTT at 5,000 parts/s with
	// -verify.
	MQTTHTTP       *loadtest.Report `json:"mqtt_vs_http_http"`
	MQTTSaturation *loadtest.Report `json:"mqtt_vs_http_mqtt"`
	MQTTRatio      float64          `json:"mqtt_vs_http_ratio"`
	MQTTFixed      *loadtest.Report `json:"mqtt_fixed_rate"`
	MQTTProfileTop string           `json:"mqtt_cpu_profile_top,omitempty"`
	// CPU: µs of CPU per part of every process, per measured run (see
	// cpuTable).
	CPU []CPURow `json:"cpu_per_part"`
}

// CPURow is one run's CPU time per part, process by process.
type CPURow struct {
	Run string           `json:"run"`
	Use *loadtest.CPUUse `json:"use"`
}

func main() {
	out := flag.String("out", "bench", "directory of report.json, report.md and the CPU profiles")
	envFile := flag.String("env", ".run/env", "the local stack's env file (make up writes it)")
	saturation := flag.Duration("saturation", 8*time.Second, "length of each saturation run")
	fixedDur := flag.Duration("fixed", 30*time.Second, "length of the fixed-rate run")
	batchDur := flag.Duration("batch", 15*time.Second, "length of the batch run")
	procParts := flag.Int("processor-parts", 1_000_000, "parts in the processor comparison's topic")
	mqttDur := flag.Duration("mqtt", 20*time.Second, "length of each run of the MQTT figures (5 and 6)")
	only := flag.String("only", "1,2,3,4,5,6", "figures to measure (comma-separated)")
	pidDir := flag.String("pids", "", "the stack's pid files (default: pids/ next to -env)")
	group := flag.String("group", "takt-processor", "the stack's processor consumer group (a measured run lasts until it has committed every part)")
	verbose := flag.Bool("v", false, "log at info level")
	portOffset := flag.Int("port-offset", 0, "added to the ports of the bench's own ingestor and bare server (18180, 18183, 18190, 18090)")
	flag.Parse()
	movePorts(*portOffset)
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	figs := map[string]bool{}
	for _, f := range strings.Split(*only, ",") {
		figs[strings.TrimSpace(f)] = true
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if *pidDir == "" {
		*pidDir = filepath.Join(filepath.Dir(*envFile), "pids")
	}
	stack := stackProcs{pidDir: *pidDir, group: *group}
	if err := run(ctx, *out, *envFile, *saturation, *fixedDur, *batchDur, *mqttDur, *procParts, figs, stack, logger); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, out, envFile string, satD, fixedD, batchD, mqttD time.Duration, procParts int, figs map[string]bool, stack stackProcs, logger *slog.Logger) error {
	env, err := loadtest.ReadEnvFile(envFile)
	if err != nil {
		return err
	}
	if env["API_KEY"] == "" {
		return fmt.Errorf("no API_KEY in %s: run make up first", envFile)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	bin := filepath.Join(".run", "bin")
	for _, b := range [][2]string{{"bench-ingestor", "./ingestor/cmd/ingestor"}, {"bench-bare", "./loadtest/cmd/bare"}} {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(bin, b[0]), b[1])
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("build %s: %w", b[1], err)
		}
	}
	stackEnv := []string{
		"TAKT_CLICKHOUSE_ADDR=" + env["CLICKHOUSE_ADDR"], "TAKT_CLICKHOUSE_DB=" + env["CLICKHOUSE_DB"],
		"TAKT_REDIS_ADDR=" + env["REDIS_ADDR"], "TAKT_KAFKA_BROKERS=" + env["KAFKA_BROKERS"],
		"TAKT_PARTS_TOPIC=" + env["PARTS_TOPIC"], "TAKT_INGEST_ADDR=" + ingestAddr, "TAKT_ADMIN_ADDR=" + ingestAdmin,
		"TAKT_MQTT_ADDR=" + mqttAddr,
		"TAKT_LOG_LEVEL=warn", "TAKT_BARE_ADDR=" + bareAddr,
		// Should a server crash, its log gets every goroutine with the
		// runtime's own frames (at the default level a crash in the
		// runtime, e.g. in the CPU profiler's traceback, hides them) and
		// the registers of the thread that crashed.
		"GOTRACEBACK=crash",
	}
	logDir := filepath.Join(".run", "logs")
	_ = os.MkdirAll(logDir, 0o755)
	for _, a := range []string{ingestAddr, bareAddr} {
		if resp, err := http.Get("http://" + a + "/"); err == nil {
			resp.Body.Close()
			return fmt.Errorf("%s already answers: another bench running? stop it first", a)
		}
	}
	var procs []*proc
	for _, name := range []string{"bench-ingestor", "bench-bare"} {
		p, err := start(filepath.Join(bin, name), stackEnv, filepath.Join(logDir, name+".log"))
		if err != nil {
			return err
		}
		defer p.stop()
		procs = append(procs, p)
	}
	for i, a := range []string{ingestAddr, bareAddr} {
		if err := waitUp(ctx, "http://"+a, procs[i]); err != nil {
			return err
		}
	}

	// CPU per part: the bench's ingestor, the stack's broker, processor,
	// ClickHouse, query API (freshness reads) and Redis, and the load
	// generator (this process).
	stackPIDs, err := loadtest.ReadPIDDir(stack.pidDir, "broker", "processor", "clickhouse", "queryapi", "redis")
	if err != nil {
		return fmt.Errorf("the stack's processes (-pids): %w", err)
	}
	self := loadtest.Proc{Name: "loadgen", PID: os.Getpid()}
	pipeline := append([]loadtest.Proc{{Name: "ingestor", PID: procs[0].cmd.Process.Pid}}, stackPIDs...)
	pipeline = append(pipeline, self)
	bareProcs := []loadtest.Proc{{Name: "bare", PID: procs[1].cmd.Process.Pid}, self}
	adm, err := newLagWatch(env["KAFKA_BROKERS"], env["PARTS_TOPIC"], stack.group)
	if err != nil {
		return err
	}
	defer adm.close()
	// Start from a drained pipeline: a backlog would be counted against
	// the first run.
	if err := adm.settle(ctx); err != nil {
		return err
	}
	// What the processes spend with no load from the bench: the floor
	// under every figure (others' tests share ClickHouse, Redis and the
	// broker).
	idle, err := loadtest.StartCPU(pipeline)
	if err != nil {
		return err
	}
	if !sleepCtx(ctx, idleWindow) {
		return ctx.Err()
	}
	idleUse := idle.Stop(0)

	rep := &Report{Date: time.Now().UTC().Format(time.RFC3339), Cores: runtime.NumCPU(), GoVersion: runtime.Version()}
	if n, err := storedParts(ctx, env["CLICKHOUSE_HTTP"], env["CLICKHOUSE_DB"]); err != nil {
		logger.Warn("the stack's stored parts are not known", "err", err)
	} else {
		rep.StoredParts, rep.StoredPartsOK = n, true
		fmt.Fprintf(os.Stderr, "bench: the stack's parts table holds %d parts\n", n)
	}
	rep.CPU = append(rep.CPU, CPURow{Run: fmt.Sprintf("idle, no load from the bench (%s)", idleWindow), Use: &idleUse})
	base := loadtest.DefaultConfig()
	base.Key, base.QueryURL, base.QueryAdminURL = env["API_KEY"], env["QUERY_URL"], env["QUERY_ADMIN_URL"]
	base.ClickHouseAddr, base.ClickHouseDB = strings.Split(env["CLICKHOUSE_ADDR"], ","), env["CLICKHOUSE_DB"]
	base.Machines, base.MaxParts = 100, loadtest.MaxParts
	say := func(r *loadtest.Report) { r.Summary(os.Stderr); fmt.Fprintln(os.Stderr) }
	// runLoad runs the load of one figure; a run during which one of the
	// bench's servers ended measured nothing but that, so it fails, and
	// says where the server's log is.
	runLoad := func(c loadtest.Config) (*loadtest.Report, error) {
		r, err := loadtest.Run(ctx, c, logger)
		for _, p := range procs {
			if e := p.ended(); e != nil {
				return nil, e
			}
		}
		return r, err
	}

	// 1. Saturation: bare gin and single-part ingest, closed loop, same
	// generator, same machine, one after the other.
	for _, conc := range []int{32, 128} {
		if !figs["1"] {
			break
		}
		for _, target := range []string{"bare", "ingest"} {
			c := base
			c.Concurrency, c.Duration, c.Label = conc, satD, fmt.Sprintf("%s saturation, %d connections", target, conc)
			c.IngestURL, c.Provision = "http://"+ingestAddr, true
			c.CPU, c.Settle = pipeline, adm.settle
			var prof chan string
			if target == "bare" {
				c.IngestURL, c.Provision = "http://"+bareAddr, false
				c.CPU, c.Settle = bareProcs, nil
			} else if conc == 128 {
				prof = profile(ctx, ingestAdmin, satD-2*time.Second, filepath.Join(out, "ingest-cpu.pprof"), filepath.Join(bin, "bench-ingestor"))
			}
			r, err := runLoad(c)
			if err != nil {
				return fmt.Errorf("%s: %w", c.Label, err)
			}
			say(r)
			if prof != nil {
				rep.ProfileTop = <-prof
			}
			rep.addCPU(c.Label, r)
			if target == "bare" {
				rep.BareRuns = append(rep.BareRuns, r)
				rep.BareBest = max(rep.BareBest, r.RequestsPerS)
			} else {
				rep.IngestRuns = append(rep.IngestRuns, r)
				rep.IngestBest = max(rep.IngestBest, r.RequestsPerS)
			}
		}
	}
	if rep.BareBest > 0 {
		rep.SaturationRat = rep.IngestBest / rep.BareBest
	}

	// 2. Fixed rate with verification.
	c := base
	if figs["2"] {
		c.IngestURL, c.Rate, c.Duration, c.Verify, c.Label = "http://"+ingestAddr, 5000, fixedD, true, "single-part at 5,000 parts/s"
		c.CPU, c.Settle = pipeline, adm.settle
		if rep.Fixed, err = runLoad(c); err != nil {
			return fmt.Errorf("%s: %w", c.Label, err)
		}
		say(rep.Fixed)
		rep.addCPU(c.Label, rep.Fixed)
	}

	// 3. Batch at saturation with verification.
	c = base
	if figs["3"] {
		c.IngestURL, c.Batch, c.Concurrency, c.Duration, c.Verify = "http://"+ingestAddr, 100, 8, batchD, true
		c.Label, c.MaxParts = "batch of 100 at saturation", 3_000_000
		c.CPU, c.Settle = pipeline, adm.settle
		prof := profile(ctx, ingestAdmin, min(batchD-2*time.Second, 10*time.Second), filepath.Join(out, "batch-cpu.pprof"), filepath.Join(bin, "bench-ingestor"))
		if rep.Batch, err = runLoad(c); err != nil {
			return fmt.Errorf("%s: %w", c.Label, err)
		}
		rep.BatchProfileTop = <-prof
		say(rep.Batch)
		rep.addCPU(c.Label, rep.Batch)
		if t := rep.Batch.DurationS + rep.Batch.DrainS; t > 0 && rep.Batch.Verified {
			rep.BatchEndToEnd = float64(rep.Batch.StoredRows) / t
		}
	}

	// 4. Processor vs the Kafka table engine.
	if figs["4"] {
		var drainProcs []loadtest.Proc // the stack's processes a drain uses
		for _, p := range stackPIDs {
			if p.Name == "broker" || p.Name == "clickhouse" {
				drainProcs = append(drainProcs, p)
			}
		}
		fig, err := loadtest.ProcessorBench(ctx, strings.Split(env["KAFKA_BROKERS"], ","), chstore.Config{
			Addr: strings.Split(env["CLICKHOUSE_ADDR"], ","), User: "default", DialTimeout: 5 * time.Second,
			ReadTimeout: 120 * time.Second, MaxOpenConns: 8,
		}, procParts, drainProcs, logger)
		if err != nil {
			rep.ProcessorError = err.Error()
			fmt.Fprintln(os.Stderr, "processor comparison:", err)
		} else {
			rep.Processor = &fig
			fmt.Fprintf(os.Stderr, "processor %.0f parts/s, Kafka engine %.0f parts/s, ratio %.2f\n",
				fig.ProcessorPartsPerS, fig.EnginePartsPerS, fig.Ratio)
			for _, u := range []struct {
				name string
				cpu  *loadtest.CPUUse
			}{{"processor drain", fig.ProcessorCPU}, {"Kafka engine drain", fig.EngineCPU}} {
				if u.cpu != nil {
					fmt.Fprintf(os.Stderr, "%s: µs of CPU per part: %s\n", u.name, u.cpu.PerPart())
				}
			}
		}
	}

	// 5. Single-part over HTTP and over MQTT at saturation: the same
	// harness, concurrency and ingestor, one after the other.
	if figs["5"] {
		for _, transport := range []string{"http", "mqtt"} {
			c := base
			c.IngestURL, c.Transport, c.MQTTAddr, c.MQTTConns = "http://"+ingestAddr, transport, mqttAddr, mqttConns
			c.Concurrency, c.Duration = mqttConcurrency, mqttD
			c.CPU, c.Settle = pipeline, adm.settle
			c.Label = fmt.Sprintf("single-part over %s at saturation, %d in flight", transport, mqttConcurrency)
			var prof chan string
			if transport == "mqtt" {
				c.Label += fmt.Sprintf(" over %d connections", mqttConns)
				prof = profile(ctx, ingestAdmin, min(mqttD-2*time.Second, 10*time.Second), filepath.Join(out, "mqtt-cpu.pprof"), filepath.Join(bin, "bench-ingestor"))
			}
			r, err := runLoad(c)
			if err != nil {
				return fmt.Errorf("%s: %w", c.Label, err)
			}
			say(r)
			rep.addCPU(c.Label, r)
			if transport == "http" {
				rep.MQTTHTTP = r
			} else {
				rep.MQTTSaturation = r
				rep.MQTTProfileTop = <-prof
			}
		}
		if rep.MQTTHTTP.RateAchieved > 0 {
			rep.MQTTRatio = rep.MQTTSaturation.RateAchieved / rep.MQTTHTTP.RateAchieved
		}
	}

	// 6. MQTT at a fixed 5,000 parts/s with verification: PUBACK latency.
	if figs["6"] {
		c := base
		c.Transport, c.MQTTAddr, c.MQTTConns = "mqtt", mqttAddr, mqttConns
		c.Rate, c.Duration, c.Verify, c.Label = 5000, mqttD, true, "single-part over MQTT at 5,000 parts/s"
		c.CPU, c.Settle = pipeline, adm.settle
		if rep.MQTTFixed, err = runLoad(c); err != nil {
			return fmt.Errorf("%s: %w", c.Label, err)
		}
		say(rep.MQTTFixed)
		rep.addCPU(c.Label, rep.MQTTFixed)
	}

	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(out, "report.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	md := markdown(rep)
	if err := os.WriteFile(filepath.Join(out, "report.md"), []byte(md), 0o644); err != nil {
		return err
	}
	fmt.Print(md)
	return nil
}

// stackProcs says where the running stack's processes are found.
type stackProcs struct {
	pidDir string // NAME.pid files
	group  string // the processor's consumer group
}

// addCPU keeps the CPU figures of a run, when it has them.
func (r *Report) addCPU(label string, run *loadtest.Report) {
	if run.CPU != nil {
		r.CPU = append(r.CPU, CPURow{Run: label, Use: run.CPU})
	} else if run.CPUError != "" {
		fmt.Fprintf(os.Stderr, "%s: CPU not measured: %s\n", label, run.CPUError)
	}
}

// idleWindow is how long the processes are watched with no load.
const idleWindow = 3 * time.Second

func sleepCtx(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// settleTimeout bounds the wait for the processor to catch up.
const settleTimeout = 60 * time.Second

// lagWatch tells when the stack's processor has committed every record of
// the parts topic: the processor commits only after ClickHouse took the
// rows, so the parts sent are stored then.
type lagWatch struct {
	cl           *kgo.Client
	adm          *kadm.Client
	topic, group string
}

func newLagWatch(brokers, topic, group string) (*lagWatch, error) {
	if brokers == "" || topic == "" {
		return nil, errors.New("no KAFKA_BROKERS or PARTS_TOPIC in the env file")
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(brokers, ",")...))
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	return &lagWatch{cl: cl, adm: kadm.NewClient(cl), topic: topic, group: group}, nil
}

func (w *lagWatch) close() { w.cl.Close() }

// behind is how many records of the topic the group has not committed.
func (w *lagWatch) behind(ctx context.Context) (int64, error) {
	ends, err := w.adm.ListEndOffsets(ctx, w.topic)
	if err != nil {
		return 0, fmt.Errorf("end offsets of %s: %w", w.topic, err)
	}
	if err := ends.Error(); err != nil {
		return 0, fmt.Errorf("end offsets of %s: %w", w.topic, err)
	}
	committed, err := w.adm.FetchOffsets(ctx, w.group)
	if err != nil {
		return 0, fmt.Errorf("offsets of group %s: %w", w.group, err)
	}
	var n int64
	ends.Each(func(o kadm.ListedOffset) {
		at := int64(0)
		if c, ok := committed.Lookup(o.Topic, o.Partition); ok {
			at = c.At
		}
		n += max(o.Offset-at, 0)
	})
	return n, nil
}

// settle waits until the group has committed the whole topic.
func (w *lagWatch) settle(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, settleTimeout)
	defer cancel()
	for {
		n, err := w.behind(ctx)
		if err == nil && n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = fmt.Errorf("%d records not committed by group %s", n, w.group)
			}
			return fmt.Errorf("the processor did not catch up in %s: %w", settleTimeout, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// proc is a child process of the bench.
type proc struct {
	name, log string // the binary's name and where its output goes
	cmd       *exec.Cmd
	exited    chan struct{} // closed once the process has ended and been reaped
}

// ended returns nil while p runs, and once it has ended an error that
// says how and where its output is.
func (p *proc) ended() error {
	select {
	case <-p.exited:
		return fmt.Errorf("%s ended during the run (%v); its output is in %s", p.name, p.cmd.ProcessState, p.log)
	default:
		return nil
	}
}

func start(path string, env []string, logPath string) (*proc, error) {
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s: %w", path, err)
	}
	p := &proc{name: filepath.Base(path), log: logPath, cmd: cmd, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); lf.Close(); close(p.exited) }()
	// A server that cannot listen (the port is taken: another bench still
	// running?) exits at once; don't measure whatever answers there.
	select {
	case <-p.exited:
		return nil, fmt.Errorf("%s exited at start; see %s", path, logPath)
	case <-time.After(500 * time.Millisecond):
	}
	return p, nil
}

// stop ends the process with SIGTERM (its ordered shutdown), then waits.
func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

func waitUp(ctx context.Context, base string, p *proc) error {
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		for _, path := range []string{"/readyz", "/"} {
			if resp, err := http.Get(base + path); err == nil {
				resp.Body.Close()
				if path == "/" || resp.StatusCode == http.StatusOK {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-p.exited:
			return fmt.Errorf("%s: the server exited", base)
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s did not come up in 30 s", base)
}

// profile takes a CPU profile of the ingestor for d, saves it to path and
// returns the top of `go tool pprof -top` on the channel ("" on failure).
func profile(ctx context.Context, addr string, d time.Duration, path, binary string) chan string {
	out := make(chan string, 1)
	go func() {
		defer close(out)
		// Start once the load is on.
		time.Sleep(time.Second)
		u := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, max(1, int(d.Seconds())))
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			out <- ""
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if err := os.WriteFile(path, b, 0o644); err != nil {
			out <- ""
			return
		}
		top, _ := exec.CommandContext(ctx, "go", "tool", "pprof", "-top", "-nodecount=30", binary, path).Output()
		out <- string(top)
	}()
	return out
}

func markdown(r *Report) string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	p("# Takt benchmark\n\n")
	stored := "not known"
	if r.StoredPartsOK {
		stored = fmt.Sprintf("%d (%s)", r.StoredParts, humanCount(r.StoredParts))
	}
	p("%s, %d cores, %s; pipeline and load generator on the same machine, loopback; parts stored when the bench began: %s. `make bench` wrote this file.\n\n", r.Date, r.Cores, r.GoVersion, stored)
	p("| figure | result | goal |\n|---|---|---|\n")
	if r.BareBest > 0 {
		p("| 1. single-part ingest vs bare gin at saturation | %.0f vs %.0f requests/s: **%.2f×** | ≥ 0.6× (then 0.7×) |\n", r.IngestBest, r.BareBest, r.SaturationRat)
	}
	if f := r.Fixed; f != nil {
		p("| 2. single-part at %.0f parts/s for %.0f s | achieved %.0f/s, p99 **%.1f ms** (p99.9 %.1f, max %.1f), errors %d, dropped %d, lost %d, duplicated %d, verified %v; freshness p50 %.0f ms, p99 **%.0f ms** (%d samples) | p99 ≤ 20 ms, 0 dropped/errors/lost/dup; freshness p99 ≤ 1 s over ≥ 200 samples |\n",
			f.RateTarget, f.DurationS, f.RateAchieved, f.Latency.P99, f.Latency.P999, f.Latency.Max, f.Errors, f.Dropped, f.Lost, f.Duplicated, f.Verified, f.Freshness.P50, f.Freshness.P99, f.Freshness.N)
	}
	if f := r.Batch; f != nil {
		p("| 3. batch (100/call) at saturation | ingest %.0f parts/s acked; end to end (sent + drained into ClickHouse) **%.0f parts/s**; lost %d, duplicated %d, verified %v; p99 %.1f ms per call; freshness p99 %.0f ms | ≥ 150k parts/s end to end (then 250k) |\n",
			f.RateAchieved, r.BatchEndToEnd, f.Lost, f.Duplicated, f.Verified, f.Latency.P99, f.Freshness.P99)
	}
	if f := r.Processor; f != nil {
		var cpu string
		if f.ProcessorCPU != nil && f.EngineCPU != nil {
			cpu = fmt.Sprintf("; µs of CPU per part, processor drain: %s; engine drain: %s", f.ProcessorCPU.PerPart(), f.EngineCPU.PerPart())
		}
		p("| 4. processor vs ClickHouse Kafka engine, %d parts | processor %.0f parts/s (%.1f s), Kafka engine %.0f parts/s (%.1f s): **%.2f×** (first 99%%: %.0f vs %.0f)%s | ≥ 3× |\n",
			f.Parts, f.ProcessorPartsPerS, f.ProcessorS, f.EnginePartsPerS, f.EngineS, f.Ratio, f.ProcessorFirst99PerS, f.EngineFirst99PerS, cpu)
	} else if r.ProcessorError != "" {
		p("| 4. processor vs ClickHouse Kafka engine | not measured: %s | ≥ 3× |\n", r.ProcessorError)
	}
	if h, m := r.MQTTHTTP, r.MQTTSaturation; h != nil && m != nil {
		p("| 5. single-part MQTT vs HTTP at saturation (%d in flight, %.0f s each) | MQTT %.0f parts/s (p99 %.1f ms, errors %d) vs HTTP %.0f parts/s (p99 %.1f ms, errors %d): **%.2f×** | ≥ 3× |\n",
			mqttConcurrency, m.DurationS, m.RateAchieved, m.Latency.P99, m.Errors, h.RateAchieved, h.Latency.P99, h.Errors, r.MQTTRatio)
	}
	if f := r.MQTTFixed; f != nil {
		p("| 6. single-part MQTT at %.0f parts/s for %.0f s | achieved %.0f/s, PUBACK p99 **%.1f ms** (p99.9 %.1f, max %.1f), errors %d, dropped %d, lost %d, duplicated %d, verified %v | 0 errors/lost/dup |\n",
			f.RateTarget, f.DurationS, f.RateAchieved, f.Latency.P99, f.Latency.P999, f.Latency.Max, f.Errors, f.Dropped, f.Lost, f.Duplicated, f.Verified)
	}
	cpuTable(&b, r.CPU)
	p("\n## Runs\n\n```\n")
	var all []*loadtest.Report
	all = append(all, r.BareRuns...)
	all = append(all, r.IngestRuns...)
	if r.Fixed != nil {
		all = append(all, r.Fixed)
	}
	if r.Batch != nil {
		all = append(all, r.Batch)
	}
	for _, x := range []*loadtest.Report{r.MQTTHTTP, r.MQTTSaturation, r.MQTTFixed} {
		if x != nil {
			all = append(all, x)
		}
	}
	for _, x := range all {
		x.Summary(&b)
		b.WriteString("\n")
	}
	p("```\n")
	for _, t := range []struct{ name, top string }{{"single-part saturation", r.ProfileTop}, {"batch", r.BatchProfileTop},
		{"single-part MQTT saturation", r.MQTTProfileTop}} {
		if t.top == "" {
			continue
		}
		lines := strings.Split(t.top, "\n")
		p("\n## Ingestor CPU profile, %s (top)\n\n```\n%s\n```\n", t.name, strings.Join(lines[:min(len(lines), 36)], "\n"))
	}
	return b.String()
}

// cpuTable writes the µs of CPU per acknowledged part of each process in
// each measured run, from /proc: utime + stime over the window from the
// first send until the processor had committed every part.
func cpuTable(b *strings.Builder, rows []CPURow) {
	if len(rows) == 0 {
		return
	}
	cols := []string{"ingestor", "bare", "broker", "processor", "clickhouse", "queryapi", "redis", "loadgen"}
	seen := map[string]bool{}
	for _, r := range rows {
		for _, c := range r.Use.Procs {
			seen[c.Name] = true
		}
	}
	fmt.Fprintf(b, "\n## CPU per part, by process\n\n")
	fmt.Fprintf(b, "µs of CPU (user + system, from /proc/<pid>/stat) per acknowledged part, over the window from the first send until the processor had committed every part; in parentheses the share of a core. *pipeline* is ingestor + broker + processor + ClickHouse (+ the query API and Redis, which serve the freshness probe and key lookups); *other* is whatever else ran on the machine meanwhile (builds and tests of others sharing it: the noise), *machine* all of it.\n\n")
	fmt.Fprintf(b, "| run | parts/s | window s |")
	var shown []string
	for _, c := range cols {
		if seen[c] {
			shown = append(shown, c)
			fmt.Fprintf(b, " %s |", c)
		}
	}
	fmt.Fprintf(b, " pipeline | other | machine |\n|---|---|---|%s---|---|---|\n", strings.Repeat("---|", len(shown)))
	for _, r := range rows {
		u := r.Use
		by := map[string]loadtest.ProcCPU{}
		for _, c := range u.Procs {
			by[c.Name] = c
		}
		rate := 0.0
		if d := u.WallS - u.SettleS; d > 0 {
			rate = float64(u.Parts) / d
		}
		fmt.Fprintf(b, "| %s | %.0f | %.1f |", r.Run, rate, u.WallS)
		var pipe float64
		for _, n := range shown {
			c, ok := by[n]
			switch {
			case !ok:
				fmt.Fprintf(b, " |")
			case c.Error != "":
				fmt.Fprintf(b, " ? |")
			case u.Parts == 0:
				fmt.Fprintf(b, " – (%.2f) |", c.Cores)
			default:
				fmt.Fprintf(b, " %.1f (%.2f) |", c.MicrosPerPart, c.Cores)
				if n != "loadgen" {
					pipe += c.MicrosPerPart
				}
			}
		}
		if u.Parts == 0 {
			fmt.Fprintf(b, " – | – (%.2f) | – (%.2f) |\n", u.Other.Cores, u.Machine.Cores)
			continue
		}
		fmt.Fprintf(b, " **%.1f** | %.1f (%.2f) | %.1f (%.2f) |\n", pipe, u.Other.MicrosPerPart, u.Other.Cores, u.Machine.MicrosPerPart, u.Machine.Cores)
	}
}

// storedParts counts the parts table of the stack's database over
// ClickHouse's HTTP interface (base: CLICKHOUSE_HTTP of the stack's env).
func storedParts(ctx context.Context, base, db string) (uint64, error) {
	if base == "" || db == "" {
		return 0, fmt.Errorf("no CLICKHOUSE_HTTP or CLICKHOUSE_DB in the stack's env")
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	q := url.Values{"query": {"SELECT count() FROM parts"}, "database": {db}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(base, "/")+"/?"+q.Encode(), nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("count parts: %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return strconv.ParseUint(strings.TrimSpace(string(body)), 10, 64)
}

// humanCount writes n as 100M, 25.3M, 1.5k, 812.
func humanCount(n uint64) string {
	f := func(v float64, unit string) string {
		return strings.TrimSuffix(strconv.FormatFloat(v, 'f', 1, 64), ".0") + unit
	}
	switch {
	case n >= 1_000_000:
		return f(float64(n)/1e6, "M")
	case n >= 1_000:
		return f(float64(n)/1e3, "k")
	}
	return strconv.FormatUint(n, 10)
}
