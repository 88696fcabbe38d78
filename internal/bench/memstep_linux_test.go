package bench

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rtcr/rtcr"
	"github.com/rtcr/rtcr/internal/procfs"
	"github.com/rtcr/rtcr/internal/track"
	"golang.org/x/sys/unix"
)

// TestMemoryStepParts measures, outside any freeze, the parts of an
// increment's memory step on a 1 GiB process tracked by a full
// checkpoint, 1 % of its pages written (single pages spread) before each
// round: /proc/PID/smaps alone, /proc/PID/maps, the Empty and Written
// scans, the copy of the written pages, and smaps read beside the scans
// and the copy as a dump reads it. Minimum and median of 15 rounds. A
// measurement, not a test: it runs only with RTCR_BENCH_PARTS=1.
func TestMemoryStepParts(t *testing.T) {
	if os.Getenv("RTCR_BENCH_PARTS") == "" {
		t.Skip("set RTCR_BENCH_PARTS=1 to measure")
	}
	dir, err := os.MkdirTemp("/dev/shm", "rtcr-parts-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	h, err := startHog(t.TempDir(), 1<<30, true)
	if err != nil {
		t.Fatal(err)
	}
	defer h.kill()
	if _, err := rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: h.pid, Dir: filepath.Join(dir, "full"), LeaveRunning: true, TrackMem: true}); err != nil {
		t.Fatal(err)
	}
	sc, err := track.OpenScanner(h.pid)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	start, end := h.addr, h.addr+h.size
	buf, err := unix.Mmap(-1, 0, 16<<20, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(buf)
	pages := int(h.size/4096) / 100
	parts := map[string][]time.Duration{}
	timed := func(name string, f func() error) {
		t0 := time.Now()
		if err := f(); err != nil {
			t.Fatal(err)
		}
		parts[name] = append(parts[name], time.Since(t0))
	}
	for range 15 {
		if err := writeSpread(h, pages, 1); err != nil {
			t.Fatal(err)
		}
		timed("smaps", func() error { _, err := procfs.ReadSmaps(h.pid); return err })
		timed("maps", func() error { _, err := procfs.ReadMaps(h.pid); return err })
		timed("empty scan", func() error { _, err := sc.Empty(start, end); return err })
		var w [][2]uint64
		timed("written scan (1 %)", func() (err error) { w, err = sc.Written(start, end); return err })
		timed("copy (1 %)", func() error { return copyRanges(h.pid, w, buf) })
		timed("written scan (none)", func() error { _, err := sc.Written(start, end); return err })
		// As a dump does it: smaps on a goroutine beside the rest.
		if err := writeSpread(h, pages, 1); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var smapsErr error
		t0 := time.Now()
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, smapsErr = procfs.ReadSmaps(h.pid)
			parts["smaps beside"] = append(parts["smaps beside"], time.Since(t0))
		}()
		timed("scans and copy beside", func() error {
			if _, err := sc.Empty(start, end); err != nil {
				return err
			}
			w, err := sc.Written(start, end)
			if err != nil {
				return err
			}
			return copyRanges(h.pid, w, buf)
		})
		wg.Wait()
		if smapsErr != nil {
			t.Fatal(smapsErr)
		}
		parts["both beside"] = append(parts["both beside"], time.Since(t0))
	}
	for _, name := range []string{"smaps", "maps", "empty scan", "written scan (1 %)", "written scan (none)", "copy (1 %)", "smaps beside", "scans and copy beside", "both beside"} {
		d := slices.Clone(parts[name])
		slices.Sort(d)
		t.Logf("%-22s min %8v median %8v", name, d[0].Round(time.Microsecond), d[len(d)/2].Round(time.Microsecond))
	}
}

// copyRanges reads the ranges w of pid into buf with process_vm_readv,
// 1024 ranges a call.
func copyRanges(pid int, w [][2]uint64, buf []byte) error {
	var local []unix.Iovec
	var remote []unix.RemoteIovec
	flush := func() error {
		if len(remote) > 0 {
			if _, err := unix.ProcessVMReadv(pid, local, remote, 0); err != nil {
				return err
			}
		}
		local, remote = local[:0], remote[:0]
		return nil
	}
	off := 0
	for _, r := range w {
		n := int(r[1] - r[0])
		if off+n > len(buf) {
			off = 0
			if err := flush(); err != nil {
				return err
			}
		}
		iov := unix.Iovec{Base: &buf[off]}
		iov.SetLen(n)
		local = append(local, iov)
		remote = append(remote, unix.RemoteIovec{Base: uintptr(r[0]), Len: n})
		off += n
		if len(remote) == 1024 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}
