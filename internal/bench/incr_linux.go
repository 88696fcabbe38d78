package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/rtcr/rtcr"
	"github.com/rtcr/rtcr/internal/image"
	"golang.org/x/sys/unix"
)

// Incr holds the best times of the incremental benchmark over all runs.
type Incr struct {
	Size uint64
	Runs int
	// Percent of the pages written between the two checkpoints; Pages
	// how many that is.
	Percent float64
	Pages   int
	// FullFreeze is the freeze of a full checkpoint that starts tracking
	// (--track-mem), FullDump its whole duration.
	FullFreeze, FullDump time.Duration
	// IncrFreeze is the freeze of the incremental checkpoint of the same
	// process after Pages were written one by one, spread evenly,
	// IncrDump its whole duration and IncrBytes the bytes it saved.
	IncrFreeze, IncrDump time.Duration
	IncrBytes            int64
	// RunFreeze, RunDump and RunBytes are the same for a second
	// increment after as many pages were written in runs of RunPages
	// contiguous pages, spread evenly.
	RunFreeze, RunDump time.Duration
	RunBytes           int64
}

// RunPages is the length of the contiguous runs of the second increment
// (64 KiB: an array, a batch of heap objects).
const RunPages = 16

// RunIncremental measures, in each run, a full checkpoint with tracking
// of a process with size bytes resident, then percent % of its pages
// written (spread evenly, from outside with process_vm_writev, which the
// kernel tracks like the process's own writes), then an incremental
// checkpoint; both leave the process running. The best of runs counts.
func RunIncremental(dir string, size uint64, percent float64, runs int) (*Incr, error) {
	if size == 0 || size%image.PageSize != 0 || percent <= 0 || percent > 100 {
		return nil, fmt.Errorf("bench: size %d or percentage %v out of range", size, percent)
	}
	work, err := os.MkdirTemp(dir, "rtcr-bench-incr-")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	defer os.RemoveAll(work)
	npages := int(size / image.PageSize)
	res := &Incr{Size: size, Runs: max(runs, 1), Percent: percent, Pages: max(1, int(float64(npages)*percent/100))}
	for i := 0; i < res.Runs; i++ {
		if err := incrOnce(work, res); err != nil {
			return nil, fmt.Errorf("bench run %d: %w", i+1, err)
		}
	}
	return res, nil
}

// stepLog is the logger the benchmarks' dumps log their steps to: Info
// on stderr when RTCR_BENCH_LOG is set, else none.
func stepLog() *slog.Logger {
	if os.Getenv("RTCR_BENCH_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

func incrOnce(work string, res *Incr) error {
	h, err := startHog(work, res.Size, true)
	if err != nil {
		return err
	}
	defer h.kill()
	full, incr := filepath.Join(work, "full"), filepath.Join(work, "incr")
	defer os.RemoveAll(full)
	defer os.RemoveAll(incr)
	st, err := rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: h.pid, Dir: full, LeaveRunning: true, TrackMem: true, Logger: stepLog()})
	if err != nil {
		return err
	}
	best(&res.FullFreeze, st.Freeze)
	best(&res.FullDump, st.Total)
	if err := writeSpread(h, res.Pages, 1); err != nil {
		return err
	}
	st, err = rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: h.pid, Dir: incr, Parent: "../full", LeaveRunning: true, TrackMem: true, Logger: stepLog()})
	if err != nil {
		return err
	}
	best(&res.IncrFreeze, st.Freeze)
	best(&res.IncrDump, st.Total)
	res.IncrBytes = st.PageBytes
	if err := writeSpread(h, res.Pages, RunPages); err != nil {
		return err
	}
	incr2 := filepath.Join(work, "incr2")
	defer os.RemoveAll(incr2)
	st, err = rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: h.pid, Dir: incr2, Parent: "../incr", LeaveRunning: true, TrackMem: true, Logger: stepLog()})
	if err != nil {
		return err
	}
	best(&res.RunFreeze, st.Freeze)
	best(&res.RunDump, st.Total)
	res.RunBytes = st.PageBytes
	return nil
}

// writeSpread writes one byte into n pages of the hog's mapping, in runs
// of run contiguous pages spread evenly over it.
func writeSpread(h *hog, n, run int) error {
	npages := int(h.size / image.PageSize)
	step := max(run, npages/n*run)
	one := []byte{0x5a}
	var local []unix.Iovec
	var remote []unix.RemoteIovec
	flush := func() error {
		if len(remote) == 0 {
			return nil
		}
		if _, err := unix.ProcessVMWritev(h.pid, local, remote, 0); err != nil {
			return fmt.Errorf("write into hog %d: %w", h.pid, err)
		}
		local, remote = local[:0], remote[:0]
		return nil
	}
	for i := 0; i < n; i++ {
		iov := unix.Iovec{Base: &one[0]}
		iov.SetLen(1)
		local = append(local, iov)
		page := (i/run)*step + i%run
		remote = append(remote, unix.RemoteIovec{Base: uintptr(h.addr + uint64(page%npages)*image.PageSize), Len: 1})
		if len(remote) == 1024 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// Print writes the incremental benchmark's results.
func (r *Incr) Print(w io.Writer) {
	fmt.Fprintf(w, "incremental checkpoints: %s resident, %v%% of the pages (%d) written in between, best of %d runs\n",
		mib(r.Size), r.Percent, r.Pages, r.Runs)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "\tfreeze\tdump\tsaved\n")
	fmt.Fprintf(tw, "full, tracking starts\t%v\t%v\t%s\n", r.FullFreeze.Round(time.Microsecond), r.FullDump.Round(time.Microsecond), mib(r.Size))
	fmt.Fprintf(tw, "incremental, single pages spread\t%v\t%v\t%s\n", r.IncrFreeze.Round(time.Microsecond), r.IncrDump.Round(time.Microsecond), mib(uint64(r.IncrBytes)))
	fmt.Fprintf(tw, "incremental, runs of %d pages spread\t%v\t%v\t%s\n", RunPages, r.RunFreeze.Round(time.Microsecond), r.RunDump.Round(time.Microsecond), mib(uint64(r.RunBytes)))
	tw.Flush()
	if r.IncrFreeze > 0 && r.RunFreeze > 0 {
		fmt.Fprintf(w, "freeze ratio incremental/full: 1/%.1f single pages, 1/%.1f runs (goal: 1/20 or better)\n",
			float64(r.FullFreeze)/float64(r.IncrFreeze), float64(r.FullFreeze)/float64(r.RunFreeze))
	}
}

// mib formats a byte count in MiB.
func mib(n uint64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
