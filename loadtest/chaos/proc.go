package chaos

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// proc is one process of the harness's deployment. It can be started
// again after it ended (a restart on the same data directory and port).
// The harness only ever signals the processes it started itself, by pid.
type proc struct {
	name string
	args []string
	env  []string
	log  string // appended to across restarts

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when the current run ended
	err  error         // the current run's exit, valid after done
}

// start runs the process; it fails when it is already running.
func (p *proc) start() error { return p.startWith(nil) }

// startWith runs the process with extra environment variables for this
// run only.
func (p *proc) startWith(vars map[string]string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil && !closed(p.done) {
		return fmt.Errorf("%s: already running (pid %d)", p.name, p.cmd.Process.Pid)
	}
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("%s: log: %w", p.name, err)
	}
	fmt.Fprintf(f, "---- %s start %s\n", time.Now().UTC().Format(time.RFC3339Nano), p.name)
	cmd := exec.Command(p.args[0], p.args[1:]...)
	cmd.Env = withEnv(p.env, vars)
	cmd.Stdout, cmd.Stderr = f, f
	// The processes die with the harness, whatever ends it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("%s: start: %w", p.name, err)
	}
	done := make(chan struct{})
	p.cmd, p.done, p.err = cmd, done, nil
	go func() {
		err := cmd.Wait()
		f.Close()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(done)
	}()
	return nil
}

func closed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// running reports whether the process is running now.
func (p *proc) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil && !closed(p.done)
}

// signal sends sig to the running process.
func (p *proc) signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || closed(p.done) {
		return fmt.Errorf("%s: not running", p.name)
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("%s: %s: %w", p.name, sig, err)
	}
	return nil
}

// wait waits up to timeout for the current run to end and returns how it
// ended.
func (p *proc) wait(timeout time.Duration) error {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	if done == nil {
		return nil
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-done:
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.err
	case <-t.C:
		return fmt.Errorf("%s: still running after %s", p.name, timeout)
	}
}

// errTimeout means a process did not end within its allowance.
var errTimeout = errors.New("did not end in time")

// kill sends SIGKILL and waits for the process to be gone.
func (p *proc) kill() error {
	if !p.running() {
		return nil
	}
	if err := p.signal(syscall.SIGKILL); err != nil && p.running() {
		return err
	}
	if err := p.wait(10 * time.Second); err != nil && p.running() {
		return fmt.Errorf("%s: SIGKILL: %w", p.name, errTimeout)
	}
	return nil
}

// stop sends SIGTERM, waits up to timeout, then SIGKILLs.
func (p *proc) stop(timeout time.Duration) error {
	if !p.running() {
		return nil
	}
	_ = p.signal(syscall.SIGCONT) // a paused process cannot handle SIGTERM
	if err := p.signal(syscall.SIGTERM); err != nil && p.running() {
		return err
	}
	if err := p.wait(timeout); err != nil && p.running() {
		return p.kill()
	}
	return nil
}

// waitReady polls ready every 100 ms until it succeeds, the process ends,
// or timeout passes.
func (p *proc) waitReady(ctx context.Context, timeout time.Duration, ready func(context.Context) error) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		last = ready(cctx)
		cancel()
		if last == nil {
			return nil
		}
		if !p.running() {
			return fmt.Errorf("%s exited during start-up (%v); log: %s", p.name, p.wait(0), p.log)
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s not ready after %s: %v; log: %s", p.name, timeout, last, p.log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
