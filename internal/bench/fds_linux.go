package bench

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/rtcr/rtcr/internal/procfs"
)

// FDs is the fd benchmark at one number of fds: the best times of a
// process holding Count fds of the mix of fdCycle, and of the same
// process holding none (the baseline, measured in the same runs).
type FDs struct {
	Count                 int
	Freeze, Dump, Restore time.Duration
	// DumpCPU and RestoreCPU are the CPU time of the dump and the
	// restore (see times).
	DumpCPU, RestoreCPU         time.Duration
	baseFreeze, baseDump        time.Duration
	baseRestore                 time.Duration
	baseDumpCPU, baseRestoreCPU time.Duration
}

// PerFD returns the time one fd adds to a measurement: (t - base) / Count.
func (f *FDs) PerFD(t, base time.Duration) time.Duration {
	return (t - base) / time.Duration(f.Count)
}

// RunFDs measures dump (frozen and total) and restore of processes holding
// counts fds each (a mix of kinds: fdCycle), and of one holding none, best
// of runs, or of smallRuns for counts below 1000 (the time their fds add
// is a few ms, less than the times swing here: measure them more often).
func RunFDs(dir string, counts []int, runs, smallRuns int) ([]FDs, error) {
	work, err := os.MkdirTemp(dir, "rtcr-bench-")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	defer os.RemoveAll(work)
	path := filepath.Join(work, "data")
	if err := os.WriteFile(path, []byte("rtcr fd benchmark\n"), 0o600); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	res := make([]FDs, len(counts))
	for r := 0; r < max(runs, smallRuns); r++ {
		for i, n := range counts {
			if (n >= 1000 && r >= runs) || (n < 1000 && r >= smallRuns) {
				continue
			}
			res[i].Count = n
			tm, err := fdsOnce(work, path, n)
			if err != nil {
				return nil, fmt.Errorf("bench %d fds: %w", n, err)
			}
			r := &res[i]
			best(&r.Freeze, tm.freeze)
			best(&r.Dump, tm.dump)
			best(&r.Restore, tm.restore)
			best(&r.DumpCPU, tm.dumpCPU)
			best(&r.RestoreCPU, tm.restoreCPU)
			if tm, err = fdsOnce(work, path, 0); err != nil {
				return nil, fmt.Errorf("bench fds baseline: %w", err)
			}
			best(&r.baseFreeze, tm.freeze)
			best(&r.baseDump, tm.dump)
			best(&r.baseRestore, tm.restore)
			best(&r.baseDumpCPU, tm.dumpCPU)
			best(&r.baseRestoreCPU, tm.restoreCPU)
		}
	}
	return res, nil
}

// fdsOnce starts a process opening n fds, waits until it has them all and
// sleeps, dumps it (killing it), restores it and kills the restored one.
func fdsOnce(work, path string, n int) (times, error) {
	p, err := startText(work, fdProg(n, path))
	if err != nil {
		return times{}, err
	}
	pid := p.Pid
	_ = p.Release()
	defer killTree(pid)
	if err := waitFDs(pid, n+3); err != nil {
		return times{}, err
	}
	tm, err := dumpRestore(work, pid)
	if err != nil {
		return times{}, err
	}
	// The restored process (same pid) must hold every fd again.
	if err := waitFDs(pid, n+3); err != nil {
		return times{}, fmt.Errorf("restored: %w", err)
	}
	return tm, nil
}

// waitFDs waits until pid has n fds and sleeps in pause().
func waitFDs(pid, n int) error {
	deadline := time.Now().Add(time.Minute)
	have := 0
	for time.Now().Before(deadline) {
		fds, err := procfs.ListFDs(pid)
		if err != nil {
			return err
		}
		have = len(fds)
		st, err := procfs.ReadStat(pid)
		if err != nil {
			return err
		}
		if have == n && st.State == 'S' {
			return nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	return fmt.Errorf("process %d has %d fds, not %d (a call of its fd mix failed?)", pid, have, n)
}

// PrintFDs writes the fd results as a table: the times; the time each fd
// adds over the process without fds, in wall time (frozen, dump, restore)
// and in CPU time (dump, restore); and the CPU time per fd as a multiple
// of the one at the first count.
func PrintFDs(w io.Writer, res []FDs) {
	if len(res) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "fds\tfrozen\tdump\trestore\tper fd: frozen\tdump\trestore\tCPU per fd: dump\trestore\tvs. first: dump\trestore\t")
	r0 := &res[0]
	x := func(a, b time.Duration) string { return fmt.Sprintf("%.2fx", a.Seconds()/b.Seconds()) }
	ms := func(d time.Duration) time.Duration { return d.Round(time.Millisecond / 10) }
	us := func(d time.Duration) time.Duration { return d.Round(time.Microsecond) }
	fmt.Fprintf(tw, "0\t%v\t%v\t%v\t\t\t\t\t\t\t\t\n", ms(r0.baseFreeze), ms(r0.baseDump), ms(r0.baseRestore))
	for i := range res {
		r := &res[i]
		fmt.Fprintf(tw, "%d\t%v\t%v\t%v\t%v\t%v\t%v\t%v\t%v\t%s\t%s\t\n", r.Count,
			ms(r.Freeze), ms(r.Dump), ms(r.Restore),
			us(r.PerFD(r.Freeze, r.baseFreeze)), us(r.PerFD(r.Dump, r.baseDump)), us(r.PerFD(r.Restore, r.baseRestore)),
			us(r.PerFD(r.DumpCPU, r.baseDumpCPU)), us(r.PerFD(r.RestoreCPU, r.baseRestoreCPU)),
			x(r.PerFD(r.DumpCPU, r.baseDumpCPU), r0.PerFD(r0.DumpCPU, r0.baseDumpCPU)),
			x(r.PerFD(r.RestoreCPU, r.baseRestoreCPU), r0.PerFD(r0.RestoreCPU, r0.baseRestoreCPU)))
	}
	tw.Flush()
}
