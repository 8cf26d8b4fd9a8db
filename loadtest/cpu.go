package loadtest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTicks is the unit of the times in /proc (USER_HZ). The kernel
// reports them in 1/100 s on every architecture, whatever its internal
// tick rate: the value is part of the user-space ABI.
const clockTicks = 100

// Proc is a process whose CPU time a run measures, by name.
type Proc struct {
	Name string `json:"name"`
	PID  int    `json:"pid"`
}

// ProcCPU is one process's CPU time over a run's window.
type ProcCPU struct {
	Name string `json:"name"`
	PID  int    `json:"pid"`
	// Seconds of CPU (user + system, every thread); Cores is Seconds over
	// the window's wall time; MicrosPerPart is Seconds per acknowledged
	// part, in µs.
	Seconds       float64 `json:"cpu_s"`
	Cores         float64 `json:"cores"`
	MicrosPerPart float64 `json:"us_per_part"`
	// Error, when set, says why the process could not be measured (it
	// ended during the window).
	Error string `json:"error,omitempty"`
}

// CPUUse is what the measured processes and the whole machine spent over
// a run's window: from the first send until the pipeline held every
// acknowledged part (see Config.Settle).
type CPUUse struct {
	// WallS is the window's length; SettleS the part of it after the
	// last answer, until the pipeline had stored everything.
	WallS   float64   `json:"wall_s"`
	SettleS float64   `json:"settle_s"`
	Parts   int64     `json:"parts"`
	Procs   []ProcCPU `json:"procs"`
	// Machine is the busy time of all cores (/proc/stat); Other is what
	// none of Procs spent: the rest of the machine (other programs, the
	// kernel's own threads), i.e. the noise the figures stood in.
	Machine ProcCPU `json:"machine"`
	Other   ProcCPU `json:"other"`
}

// ReadPIDDir reads the pid files (NAME.pid, one number each) of dir, as
// the local stack writes them under .run/pids, for the names given.
func ReadPIDDir(dir string, names ...string) ([]Proc, error) {
	var procs []Proc
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(dir, n+".pid"))
		if err != nil {
			return nil, fmt.Errorf("pid of %s: %w", n, err)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 {
			return nil, fmt.Errorf("pid file of %s: %q is not a pid", n, bytes.TrimSpace(b))
		}
		procs = append(procs, Proc{Name: n, PID: pid})
	}
	return procs, nil
}

// CPUMeter takes the CPU times of a set of processes and of the machine
// at the start (StartCPU) and at the end (Stop) of a window.
type CPUMeter struct {
	procs   []Proc
	start   []uint64
	machine uint64
	at      time.Time
}

func StartCPU(procs []Proc) (*CPUMeter, error) {
	m := &CPUMeter{procs: procs, start: make([]uint64, len(procs)), at: time.Now()}
	var err error
	if m.machine, err = machineTicks(); err != nil {
		return nil, err
	}
	for i, p := range procs {
		if m.start[i], err = processTicks(p.PID); err != nil {
			return nil, fmt.Errorf("%s: %w", p.Name, err)
		}
	}
	return m, nil
}

// Stop ends the window and divides by parts (0: no per-part figures).
func (m *CPUMeter) Stop(parts int64) CPUUse {
	wall := time.Since(m.at).Seconds()
	u := CPUUse{WallS: wall, Parts: parts}
	fill := func(c *ProcCPU, ticks uint64) {
		c.Seconds = float64(ticks) / clockTicks
		if wall > 0 {
			c.Cores = c.Seconds / wall
		}
		if parts > 0 {
			c.MicrosPerPart = c.Seconds * 1e6 / float64(parts)
		}
	}
	var sum uint64
	for i, p := range m.procs {
		c := ProcCPU{Name: p.Name, PID: p.PID}
		end, err := processTicks(p.PID)
		if err != nil {
			c.Error = err.Error()
		} else {
			d := end - min(end, m.start[i])
			sum += d
			fill(&c, d)
		}
		u.Procs = append(u.Procs, c)
	}
	u.Machine.Name, u.Other.Name = "machine", "other"
	if end, err := machineTicks(); err != nil {
		u.Machine.Error = err.Error()
	} else {
		d := end - min(end, m.machine)
		fill(&u.Machine, d)
		fill(&u.Other, d-min(d, sum))
	}
	return u
}

// processTicks is a process's user + system time in clock ticks, all its
// threads included.
func processTicks(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseProcStat(b)
}

// parseProcStat returns utime + stime from the contents of
// /proc/<pid>/stat. The second field, the command in parentheses, may
// hold spaces and parentheses itself, so the fields are counted from the
// last ')'.
func parseProcStat(b []byte) (uint64, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("proc stat: no command field")
	}
	// After the command: state (field 3), ... utime (14), stime (15).
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("proc stat: %d fields after the command, want at least 13", len(f))
	}
	utime, err := strconv.ParseUint(f[11], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("proc stat: utime: %w", err)
	}
	stime, err := strconv.ParseUint(f[12], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("proc stat: stime: %w", err)
	}
	return utime + stime, nil
}

// machineTicks is the busy time of all cores in clock ticks.
func machineTicks() (uint64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	return parseMachineStat(b)
}

// parseMachineStat returns the busy time of the "cpu" line of /proc/stat:
// user, nice, system, irq, softirq and steal; idle and iowait are not
// busy, and guest time is already inside user and nice.
func parseMachineStat(b []byte) (uint64, error) {
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "cpu" {
			continue
		}
		if len(f) < 9 {
			return 0, fmt.Errorf("/proc/stat: cpu line has %d fields, want at least 9", len(f))
		}
		var busy uint64
		for _, k := range []int{1, 2, 3, 6, 7, 8} { // user nice system _ _ irq softirq steal
			v, err := strconv.ParseUint(f[k], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("/proc/stat: cpu field %d: %w", k, err)
			}
			busy += v
		}
		return busy, nil
	}
	return 0, errors.New("/proc/stat: no cpu line")
}

// PerPart returns the µs of CPU per part of each process, of the others
// and of the machine, on one line.
func (u *CPUUse) PerPart() string { return strings.TrimSpace(u.line()) }

// line is the µs of CPU per part of each process, the rest and the
// machine, on one line.
func (u *CPUUse) line() string {
	var sb strings.Builder
	for _, c := range append(append([]ProcCPU{}, u.Procs...), u.Other, u.Machine) {
		if c.Error != "" {
			fmt.Fprintf(&sb, "  %s ?", c.Name)
			continue
		}
		fmt.Fprintf(&sb, "  %s %.1f", c.Name, c.MicrosPerPart)
	}
	return sb.String()
}
