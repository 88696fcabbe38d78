package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/rtcr/rtcr"
	"github.com/rtcr/rtcr/internal/image"
)

// PeriodicOptions says what the periodic benchmark measures.
type PeriodicOptions struct {
	// Dir is where the series of checkpoints is written.
	Dir string
	// Size is the writer's resident memory.
	Size uint64
	// Interval is the time between the starts of two checkpoints (like
	// `rtcr run --every`); a checkpoint that takes longer delays the
	// next, as a ticker would.
	Interval time.Duration
	// Window is how long each measurement lasts.
	Window time.Duration
	// Runs is the number of runs; the best window of each kind counts.
	Runs int
	// Spin is the writer's work between two page writes (iterations of a
	// countdown loop); 0 means DefaultSpin.
	Spin uint32
	// Keep is the number of checkpoints the series keeps (older ones are
	// merged into their children, as `rtcr run --keep` does).
	Keep int
}

// DefaultSpin makes the writer write about 10,000 pages a second here
// (40 MiB/s, scattered), a few MiB between two checkpoints 100 ms apart.
const DefaultSpin = 200000

// Periodic holds the results of the periodic benchmark.
type Periodic struct {
	PeriodicOptions
	// Unchecked is the writer's best rate (pages written a second) in a
	// window without checkpoints: one before the checkpoints start and
	// one after they ended (and the tracking with them), in every run.
	Unchecked float64
	// Checked is its best rate in a window with a checkpoint every
	// Interval (after the first, full, checkpoint, which is not in it).
	Checked float64
	// Tracked is its best rate in a window right after the checked one,
	// tracked but without checkpoints: every page it writes was
	// write-protected by the last checkpoint (the writer comes back to
	// a page only after writing all the others), so each write faults
	// once. Against Unchecked it gives the cost of one fault.
	Tracked float64
	// The rest describe the best checked window: its length, the
	// checkpoints made in it, their summed and longest freeze, the bytes
	// they saved, and how many were full images.
	Elapsed              time.Duration
	Checkpoints          int
	FreezeSum, FreezeMax time.Duration
	Bytes                int64
	Full                 int
	// FullFreeze is the freeze of the first, full, checkpoint.
	FullFreeze time.Duration
}

// RunPeriodic measures how much of a memory-writing process's work
// checkpoints every o.Interval cost: in each run, the same writer process
// works o.Window unchecked, o.Window under a rtcr.Checkpointer (the
// machinery of `rtcr run --every`), o.Window tracked without checkpoints,
// and o.Window unchecked again (tracking ended).
func RunPeriodic(o PeriodicOptions) (*Periodic, error) {
	if o.Size < 2*image.PageSize || o.Size%image.PageSize != 0 || o.Interval <= 0 || o.Window <= 0 {
		return nil, fmt.Errorf("bench: size %d, interval %v or window %v out of range", o.Size, o.Interval, o.Window)
	}
	if o.Spin == 0 {
		o.Spin = DefaultSpin
	}
	o.Runs = max(o.Runs, 1)
	work, err := os.MkdirTemp(o.Dir, "rtcr-bench-periodic-")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	defer os.RemoveAll(work)
	res := &Periodic{PeriodicOptions: o}
	for i := 0; i < o.Runs; i++ {
		if err := periodicOnce(work, i, res); err != nil {
			return nil, fmt.Errorf("bench run %d: %w", i+1, err)
		}
	}
	return res, nil
}

func periodicOnce(work string, run int, res *Periodic) error {
	w, err := startWriter(work, res.Size, res.Spin)
	if err != nil {
		return err
	}
	defer w.kill()
	rate, err := uncheckedWindow(w, res.Window)
	if err != nil {
		return err
	}
	res.Unchecked = max(res.Unchecked, rate)
	series := filepath.Join(work, fmt.Sprintf("series-%d", run))
	defer os.RemoveAll(series)
	cp, err := rtcr.NewCheckpointer(w.pid, rtcr.CheckpointerOptions{Dir: series, Keep: res.Keep, Logger: stepLog()})
	if err != nil {
		return err
	}
	first, err := cp.Checkpoint(context.Background())
	if err != nil {
		_ = cp.Close()
		return fmt.Errorf("first checkpoint: %w", err)
	}
	best(&res.FullFreeze, first.Freeze)
	err = checkedWindow(w, cp, res)
	if err == nil {
		rate, err = uncheckedWindow(w, res.Window)
		res.Tracked = max(res.Tracked, rate)
	}
	if cerr := cp.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("end tracking: %w", cerr)
	}
	if err != nil {
		return err
	}
	rate, err = uncheckedWindow(w, res.Window)
	if err != nil {
		return err
	}
	res.Unchecked = max(res.Unchecked, rate)
	return nil
}

// uncheckedWindow returns the writer's rate over d.
func uncheckedWindow(w *writer, d time.Duration) (float64, error) {
	c0, err := w.count()
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	time.Sleep(d)
	c1, err := w.count()
	if err != nil {
		return 0, err
	}
	return float64(c1-c0) / time.Since(t0).Seconds(), nil
}

// checkedWindow measures the writer's rate over res.Window with a
// checkpoint every res.Interval, and keeps the window in res if its rate
// is the best so far.
func checkedWindow(w *writer, cp *rtcr.Checkpointer, res *Periodic) error {
	var n, full int
	var sum, longest time.Duration
	var bytes int64
	c0, err := w.count()
	if err != nil {
		return err
	}
	t0 := time.Now()
	end := t0.Add(res.Window)
	next := t0.Add(res.Interval)
	for next.Before(end) {
		time.Sleep(time.Until(next))
		st, err := cp.Checkpoint(context.Background())
		if err != nil {
			return fmt.Errorf("checkpoint %d: %w", n+1, err)
		}
		n++
		sum += st.Freeze
		longest = max(longest, st.Freeze)
		bytes += st.PageBytes
		if st.Parent == "" {
			full++
		}
		next = next.Add(res.Interval)
		if now := time.Now(); next.Before(now) {
			next = now
		}
	}
	time.Sleep(time.Until(end))
	c1, err := w.count()
	if err != nil {
		return err
	}
	elapsed := time.Since(t0)
	rate := float64(c1-c0) / elapsed.Seconds()
	if rate > res.Checked {
		res.Checked = rate
		res.Elapsed, res.Checkpoints, res.FreezeSum, res.FreezeMax, res.Bytes, res.Full = elapsed, n, sum, longest, bytes, full
	}
	return nil
}

// Print writes the periodic benchmark's results.
func (r *Periodic) Print(out io.Writer) {
	fmt.Fprintf(out, "periodic checkpoints: writer with %s resident, a checkpoint every %v, windows of %v, best of %d runs\n",
		mib(r.Size), r.Interval, r.Window, r.Runs)
	if r.Unchecked <= 0 || r.Checkpoints == 0 {
		fmt.Fprintf(out, "no measurement (unchecked rate %.0f pages/s, %d checkpoints)\n", r.Unchecked, r.Checkpoints)
		return
	}
	fmt.Fprintf(out, "unchecked: %.0f pages written/s\n", r.Unchecked)
	if r.Tracked > 0 {
		fmt.Fprintf(out, "tracked, no checkpoint, every write a write-protect fault: %.0f pages written/s: %.1f µs a fault\n",
			r.Tracked, 1e6*(1/r.Tracked-1/r.Unchecked))
	}
	fmt.Fprintf(out, "checked:   %.0f pages written/s: %d checkpoints (%d full) in %v, %s saved each on average\n",
		r.Checked, r.Checkpoints, r.Full, r.Elapsed.Round(time.Millisecond), mib(uint64(r.Bytes)/uint64(r.Checkpoints)))
	fmt.Fprintf(out, "freeze: %v on average, %v at most (the first, full, checkpoint: %v)\n",
		(r.FreezeSum / time.Duration(r.Checkpoints)).Round(time.Microsecond), r.FreezeMax.Round(time.Microsecond), r.FullFreeze.Round(time.Microsecond))
	loss := 1 - r.Checked/r.Unchecked
	frozen := r.FreezeSum.Seconds() / r.Elapsed.Seconds()
	fmt.Fprintf(out, "throughput lost: %.1f %% (goal: 5 %% or less), of which frozen %.1f %%, the rest %.1f %%", 100*loss, 100*frozen, 100*(loss-frozen))
	if pages := r.Bytes / image.PageSize; pages > 0 {
		// The rest is write-protect faults (one per page written
		// between two checkpoints) and rtcr's own CPU time.
		rest := (loss - frozen) * r.Elapsed.Seconds() / float64(pages)
		fmt.Fprintf(out, " (%.1f µs per page saved)", rest*1e6)
	}
	fmt.Fprintln(out)
}
