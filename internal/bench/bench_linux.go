package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/rtcr/rtcr"
	"github.com/rtcr/rtcr/internal/image"
	"golang.org/x/sys/unix"
)

// Options configures a benchmark run.
type Options struct {
	// Size is the resident memory of the benchmarked process, in bytes.
	Size uint64
	// Runs is how many times everything is measured; the best run counts.
	Runs int
	// Dir is where images are written (use a tmpfs such as /dev/shm).
	Dir string
}

// Result holds the best time of each measurement over all runs.
type Result struct {
	Size uint64
	Runs int
	// ReadvBare is process_vm_readv of the memory into a reused buffer.
	ReadvBare time.Duration
	// ReadvWrite is ReadvBare plus writing the bytes to a file in Dir: the
	// least any dump into Dir can cost.
	ReadvWrite time.Duration
	// Dump is a whole rtcr dump; Freeze the time the target was stopped.
	Dump, Freeze time.Duration
	// WritevFresh is process_vm_writev of the same bytes into fresh memory
	// of another process: the least a restore can cost.
	WritevFresh time.Duration
	// Restore is a whole rtcr restore.
	Restore time.Duration
}

// Run measures dump and restore of a process with opts.Size bytes of
// resident memory.
func Run(opts Options) (*Result, error) {
	if opts.Size == 0 || opts.Size%image.PageSize != 0 {
		return nil, fmt.Errorf("bench: size %d is not a positive multiple of the page size", opts.Size)
	}
	if opts.Runs <= 0 {
		opts.Runs = 1
	}
	work, err := os.MkdirTemp(opts.Dir, "rtcr-bench-")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	defer os.RemoveAll(work)
	res := &Result{Size: opts.Size, Runs: opts.Runs}
	for i := 0; i < opts.Runs; i++ {
		if err := runOnce(work, opts.Size, res); err != nil {
			return nil, fmt.Errorf("bench run %d: %w", i+1, err)
		}
	}
	return res, nil
}

func best(cur *time.Duration, d time.Duration) {
	if *cur == 0 || d < *cur {
		*cur = d
	}
}

func runOnce(work string, size uint64, res *Result) error {
	h, err := startHog(work, size, true)
	if err != nil {
		return err
	}
	defer h.kill()
	d, err := copyOut(h, nil)
	if err != nil {
		return err
	}
	best(&res.ReadvBare, d)
	f, err := os.Create(filepath.Join(work, "ceiling.img"))
	if err != nil {
		return err
	}
	d, err = copyOut(h, f)
	f.Close()
	os.Remove(f.Name())
	if err != nil {
		return err
	}
	best(&res.ReadvWrite, d)

	dir := filepath.Join(work, "img")
	defer os.RemoveAll(dir)
	st, err := rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: h.pid, Dir: dir})
	if err != nil {
		return err
	}
	h.kill() // reap the dumped hog, freeing its pid
	best(&res.Dump, st.Total)
	best(&res.Freeze, st.Freeze)

	c, err := image.ReadManifest(dir)
	if err != nil {
		return err
	}
	if d, err = copyIn(work, filepath.Join(dir, c.Processes[0].PageFile), size); err != nil {
		return err
	}
	best(&res.WritevFresh, d)
	rst, err := rtcr.Restore(rtcr.RestoreOptions{Dir: dir})
	if err != nil {
		return err
	}
	best(&res.Restore, rst.Total)
	return nil
}

// chunk is the size of one copy in the ceilings, as in rtcr's dump.
const chunk = 8 << 20

// copyOut reads the hog's memory with process_vm_readv into one reused
// buffer, writing each chunk to w if w is not nil.
func copyOut(h *hog, w io.Writer) (time.Duration, error) {
	buf := make([]byte, chunk)
	t0 := time.Now()
	for off := uint64(0); off < h.size; off += chunk {
		n := min(chunk, h.size-off)
		local := []unix.Iovec{{Base: &buf[0]}}
		local[0].SetLen(int(n))
		remote := []unix.RemoteIovec{{Base: uintptr(h.addr + off), Len: int(n)}}
		if _, err := unix.ProcessVMReadv(h.pid, local, remote, 0); err != nil {
			return 0, fmt.Errorf("process_vm_readv of %d: %w", h.pid, err)
		}
		if w != nil {
			if _, err := w.Write(buf[:n]); err != nil {
				return 0, err
			}
		}
	}
	return time.Since(t0), nil
}

// copyIn writes size bytes of the dumped page file pages into fresh memory
// of a new hog with process_vm_writev.
func copyIn(work, pages string, size uint64) (time.Duration, error) {
	f, err := os.Open(pages)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	data, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_PRIVATE|unix.MAP_POPULATE)
	if err != nil {
		return 0, fmt.Errorf("map page file: %w", err)
	}
	defer unix.Munmap(data)
	h, err := startHog(work, size, false)
	if err != nil {
		return 0, err
	}
	defer h.kill()
	t0 := time.Now()
	for off := uint64(0); off < size; off += chunk {
		n := min(chunk, size-off)
		local := []unix.Iovec{{Base: &data[off]}}
		local[0].SetLen(int(n))
		remote := []unix.RemoteIovec{{Base: uintptr(h.addr + off), Len: int(n)}}
		if _, err := unix.ProcessVMWritev(h.pid, local, remote, 0); err != nil {
			return 0, fmt.Errorf("process_vm_writev into %d: %w", h.pid, err)
		}
	}
	return time.Since(t0), nil
}

// Print writes the result as a table of times, throughputs and ratios.
func (r *Result) Print(w io.Writer) {
	mbps := func(d time.Duration) string {
		return fmt.Sprintf("%.0f", float64(r.Size)/1e6/d.Seconds())
	}
	ratio := func(ceil, d time.Duration) string {
		return fmt.Sprintf("%.0f%%", 100*ceil.Seconds()/d.Seconds())
	}
	fmt.Fprintf(w, "%d MiB resident, best of %d runs\n\n", r.Size>>20, r.Runs)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "measurement\ttime\tMB/s\tof ceiling\t")
	row := func(name string, d time.Duration, rel string) {
		fmt.Fprintf(tw, "%s\t%v\t%s\t%s\t\n", name, d.Round(time.Millisecond), mbps(d), rel)
	}
	row("process_vm_readv (memory bound)", r.ReadvBare, "")
	row("readv + write to dir (dump ceiling)", r.ReadvWrite, "100%")
	row("rtcr dump", r.Dump, ratio(r.ReadvWrite, r.Dump))
	fmt.Fprintf(tw, "%s\t%v\t\t\t\n", "  of which target frozen", r.Freeze.Round(time.Millisecond))
	row("writev into fresh memory (restore ceiling)", r.WritevFresh, "100%")
	row("rtcr restore", r.Restore, ratio(r.WritevFresh, r.Restore))
	tw.Flush()
}
