package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/takt/takt/internal/config"
	"github.com/takt/takt/loadtest"
)

// Config is one run of the matrix.
type Config struct {
	// Dir holds the deployment's data, logs and binaries; it is emptied
	// first. Root is the repository ("" finds it from the working
	// directory).
	Dir  string
	Root string
	// Faults are the names of the faults to inject, in matrix order
	// (empty: all; see Faults).
	Faults []string
	// Short shortens the faults that last (pauses, slow answers) for CI.
	Short bool
	// Rate is the load in parts per second, sent by Machines simulated
	// machines in requests of Batch parts.
	Rate     float64
	Machines int
	Batch    int
	// Partitions of the parts topic.
	Partitions int
	// Load is how long the load runs per fault; it is stretched to
	// Before + the fault's hold + After when that is longer. The fault is
	// injected Before after the load started.
	Load, Before, After time.Duration
	// DrainTimeout bounds the wait for the pipeline to store every
	// acknowledged part after the load.
	DrainTimeout time.Duration
}

// Hard caps: the harness shares the machine with what it measures.
const (
	maxRate     = 20_000
	maxMachines = 1_000
	maxLoad     = 5 * time.Minute
	maxDrain    = 10 * time.Minute
)

// DefaultConfig is the full matrix (`make chaos`): about 1.2M parts over
// twelve faults at 2,000 parts/s, 50 s each (the broker faults send less:
// requests wait for the broker). Short is the CI matrix: a few minutes,
// far fewer parts.
func DefaultConfig(short bool) Config {
	c := Config{Rate: 2000, Machines: 50, Batch: 1, Partitions: 6, Load: 50 * time.Second,
		Before: 6 * time.Second, After: 6 * time.Second, DrainTimeout: 3 * time.Minute}
	if short {
		c.Short, c.Rate, c.Load, c.Before, c.After, c.DrainTimeout = true, 400, 10*time.Second, 3*time.Second, 3*time.Second, 90*time.Second
	}
	return c
}

// Validate reports every problem at once.
func (c Config) Validate() error {
	var p config.Problems
	p.Addf(c.Dir == "", "chaos: no data directory")
	p.Addf(c.Rate <= 0 || c.Rate > maxRate, "chaos: rate %g: must be in (0, %d]", c.Rate, maxRate)
	p.Addf(c.Machines < 1 || c.Machines > maxMachines, "chaos: machines %d: must be 1..%d", c.Machines, maxMachines)
	p.Addf(c.Batch < 1 || c.Batch > loadtest.MaxBatch, "chaos: batch %d: must be 1..%d", c.Batch, loadtest.MaxBatch)
	p.Addf(c.Partitions < 1 || c.Partitions > 64, "chaos: partitions %d: must be 1..64", c.Partitions)
	p.Addf(c.Load <= 0 || c.Load > maxLoad, "chaos: load %s: must be in (0, %s]", c.Load, maxLoad)
	p.Addf(c.Before < time.Second || c.After < time.Second, "chaos: before and after must be at least 1 s")
	p.Addf(c.DrainTimeout <= 0 || c.DrainTimeout > maxDrain, "chaos: drain timeout %s: must be in (0, %s]", c.DrainTimeout, maxDrain)
	known := Faults()
	for _, f := range c.Faults {
		p.Addf(!slices.Contains(known, f), "chaos: unknown fault %q (known: %s)", f, strings.Join(known, ", "))
	}
	return p.Err()
}

// Run starts the deployment, runs the faults one after the other and
// returns the report. An error means the matrix could not run; a fault
// that lost or doubled parts is in the report (Report.OK).
func Run(ctx context.Context, cfg Config, logger *slog.Logger) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Root == "" {
		wd, err := os.Getwd()
		if err != nil {
			return nil, err
		}
		if cfg.Root, err = repoRoot(wd); err != nil {
			return nil, err
		}
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, err
	}
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("empty %s: %w", dir, err)
	}
	started := time.Now()
	logger.Info("starting the harness's own deployment", "dir", dir)
	c, err := startCluster(ctx, cfg.Root, dir, cfg.Partitions, logger)
	if err != nil {
		return nil, err
	}
	defer c.Close()

	mode := "full"
	if cfg.Short {
		mode = "short"
	}
	rep := &Report{Date: time.Now().UTC().Format(time.RFC3339), Cores: runtime.NumCPU(), Mode: mode,
		Rate: cfg.Rate, Machines: cfg.Machines, Batch: cfg.Batch, Partitions: cfg.Partitions}
	for _, f := range matrix(cfg.Short) {
		if len(cfg.Faults) > 0 && !slices.Contains(cfg.Faults, f.name) {
			continue
		}
		if ctx.Err() != nil {
			break
		}
		if err := c.ensureUp(ctx); err != nil {
			return rep, fmt.Errorf("before %s: %w", f.name, err)
		}
		logger.Info("fault", "name", f.name, "what", f.what)
		res := runFault(ctx, c, cfg, f, logger)
		logger.Info("fault done", "name", f.name, "ok", res.OK(), "sent", res.Sent, "acked", res.Acked,
			"stored", res.Stored, "lost", res.Lost, "doubled", res.Doubled, "recovery_s", res.RecoveryS, "err", res.Err)
		rep.Results = append(rep.Results, res)
	}
	rep.DurationS = time.Since(started).Seconds()
	if ctx.Err() != nil {
		return rep, fmt.Errorf("interrupted: %w", ctx.Err())
	}
	return rep, nil
}

// ensureUp brings the deployment back to its normal shape whatever a
// fault's heal left: every process running and not paused, no second
// processor, no delay, Redis not paused.
func (c *Cluster) ensureUp(ctx context.Context) error {
	c.proxy.SetDelay(0)
	for _, p := range []*proc{c.clickhouse, c.redisProc, c.broker} {
		if p.running() {
			_ = p.signal(syscall.SIGCONT)
		}
	}
	if err := c.processor2.stop(60 * time.Second); err != nil {
		return err
	}
	starts := []struct {
		p     *proc
		start func(context.Context) error
	}{
		{c.clickhouse, c.startClickHouse}, {c.redisProc, c.startRedis}, {c.broker, c.startBroker},
		{c.ingestor, func(ctx context.Context) error { return c.startService(ctx, c.ingestor) }},
		{c.processor, func(ctx context.Context) error { return c.startService(ctx, c.processor) }},
		{c.queryapi, func(ctx context.Context) error { return c.startService(ctx, c.queryapi) }},
	}
	for _, s := range starts {
		if !s.p.running() {
			c.logger.Warn("restarting a process a fault left stopped", "process", s.p.name)
			if err := s.start(ctx); err != nil {
				return err
			}
		}
	}
	rdb := c.redis()
	defer rdb.Close()
	return rdb.Do(ctx, "CLIENT", "UNPAUSE").Err()
}

// runFault runs the load, injects and heals f, drains and counts.
func runFault(ctx context.Context, c *Cluster, cfg Config, f fault, logger *slog.Logger) Result {
	res := Result{Fault: f.name, What: f.what}
	hold := f.hold
	load := max(cfg.Load, cfg.Before+hold+cfg.After)
	led := newLedger()

	lc := loadtest.DefaultConfig()
	lc.IngestURL, lc.QueryURL, lc.Key = "http://"+c.ingestAddr, "http://"+c.queryAddr, c.apiKey
	lc.ClickHouseAddr, lc.ClickHouseDB = []string{c.directAddr()}, database
	lc.Machines, lc.Rate, lc.Batch, lc.Duration = cfg.Machines, cfg.Rate, cfg.Batch, load
	lc.MaxParts = min(loadtest.MaxParts, int(cfg.Rate*load.Seconds())+cfg.Batch)
	lc.Label, lc.Outcome = f.name, led.add
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))

	repairs0, _ := c.metric(ctx, c.procAddr, "takt_processor_rollup_repairs_total")
	start := time.Now()
	type loadResult struct {
		rep *loadtest.Report
		err error
	}
	loaded := make(chan loadResult, 1)
	go func() {
		rep, err := loadtest.Run(ctx, lc, quiet)
		loaded <- loadResult{rep, err}
	}()

	sleep(ctx, cfg.Before)
	injected := time.Now()
	var errs []error
	if err := f.inject(ctx, c); err != nil {
		errs = append(errs, fmt.Errorf("inject: %w", err))
	}
	sleep(ctx, hold)
	if err := f.heal(ctx, c); err != nil {
		errs = append(errs, fmt.Errorf("heal: %w", err))
	}
	healed := time.Now()
	res.FaultS = healed.Sub(injected).Seconds()
	// Recovery is watched from the heal on: when does ClickHouse hold
	// every part acknowledged before it?
	recovered := make(chan time.Time, 1)
	ackedAtHeal := led.ackedSoFar()
	go func() {
		recovered <- c.watchStored(ctx, start, ackedAtHeal, healed.Add(load+cfg.DrainTimeout))
	}()

	lr := <-loaded
	if lr.err != nil {
		errs = append(errs, fmt.Errorf("load: %w", lr.err))
	}
	if lr.rep != nil {
		res.Dropped = lr.rep.Dropped
	}
	// The pipeline drained: every part acknowledged is stored (or the
	// drain timeout passed: the tally shows the losses).
	c.watchStored(ctx, start, led.ackedSoFar(), time.Now().Add(cfg.DrainTimeout))
	caughtUp := <-recovered
	// A replayed block would land after the rest: give the processor a
	// few flushes to show one, and the parts area its lag.
	sleep(ctx, 3*time.Second)

	stored, err := c.storedParts(ctx, start)
	if err != nil {
		errs = append(errs, err)
	}
	led.mu.Lock()
	res.Tally = tally(led.parts, stored)
	twice := led.twice
	led.mu.Unlock()
	if twice > 0 {
		errs = append(errs, fmt.Errorf("%d parts had two outcomes (harness bug)", twice))
	}
	if res.API, err = c.apiParts(ctx, start, led); err != nil {
		errs = append(errs, fmt.Errorf("parts area: %w", err))
	}
	if res.Rollup, err = c.checkRollups(ctx); err != nil {
		errs = append(errs, fmt.Errorf("rollups: %w", err))
	}
	if repairs1, err := c.metric(ctx, c.procAddr, "takt_processor_rollup_repairs_total"); err == nil {
		if repairs1 >= repairs0 {
			res.RollupRepairs = repairs1 - repairs0
		} else {
			res.RollupRepairs = repairs1 // the processor was restarted
		}
	}
	if f.ingestFlows {
		// Every part answered 200, and no stall long enough to hold back
		// a tenth of the load (the in-flight cap is reached when answers
		// take over a second; a busy machine causes short ones).
		due := res.Sent + res.Dropped
		res.check("ingest unaffected", res.Rejected+res.Uncertain == 0 && res.Dropped*10 <= due,
			fmt.Sprintf("%d parts not answered 200; %d of %d held back by the in-flight cap", res.Rejected+res.Uncertain, res.Dropped, due))
	}
	if f.checks != nil {
		f.checks(ctx, c, &res)
	}

	// Recovered: the ingestor answers 200 again (its last error before
	// the heal or after it) and ClickHouse holds every part acknowledged
	// before the heal.
	_, lastErr := led.errorSpan()
	if !caughtUp.IsZero() {
		end := caughtUp
		if lastErr.After(end) {
			end = lastErr
		}
		res.RecoveryS = max(0, end.Sub(healed).Seconds())
		res.Recovered = true
	}
	if len(errs) > 0 {
		res.Err = errors.Join(errs...).Error()
	}
	return res
}

func sleep(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
