package bench

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/rtcr/rtcr/internal/testutil"
	"golang.org/x/sys/unix"
)

// TestRunSmall runs every measurement once on small shapes, so the
// benchmark code keeps working; it asserts nothing about speed.
func TestRunSmall(t *testing.T) {
	testutil.RequireRoot(t)
	res, err := Run(Options{Size: 4 << 20, Runs: 1, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	res.Print(io.Discard)
	shapes, err := RunShapes(t.TempDir(), 4, 3, 1, "")
	if err != nil {
		t.Fatal(err)
	}
	PrintShapes(io.Discard, shapes)
	for _, s := range shapes {
		if s.Dump <= 0 || s.Restore <= 0 || s.Freeze <= 0 {
			t.Errorf("%s: not measured: %+v", s.Name, s)
		}
	}
}

// BenchmarkDumpRestore reports dump and restore throughput and the ratios
// to their ceilings for RTCR_BENCH_MIB MiB (default 256) in /dev/shm.
// One iteration is a whole best-of-3 measurement: run it with
// -benchtime=1x.
func BenchmarkDumpRestore(b *testing.B) {
	testutil.RequireRoot(b)
	mib := 256
	if v, err := strconv.Atoi(os.Getenv("RTCR_BENCH_MIB")); err == nil && v > 0 {
		mib = v
	}
	for i := 0; i < b.N; i++ {
		res, err := Run(Options{Size: uint64(mib) << 20, Runs: 3, Dir: "/dev/shm"})
		if err != nil {
			b.Fatal(err)
		}
		mb := float64(res.Size) / 1e6
		b.ReportMetric(mb/res.Dump.Seconds(), "dump-MB/s")
		b.ReportMetric(mb/res.Restore.Seconds(), "restore-MB/s")
		b.ReportMetric(res.ReadvWrite.Seconds()/res.Dump.Seconds(), "dump/ceiling")
		b.ReportMetric(res.WritevFresh.Seconds()/res.Restore.Seconds(), "restore/ceiling")
		b.ReportMetric(float64(res.Freeze.Microseconds())/1000, "freeze-ms")
	}
}

// TestRunFDsSmall runs the fd benchmark once on small counts, so its code
// keeps working (every kind of its mix dumps and restores); it asserts
// nothing about speed.
func TestRunFDsSmall(t *testing.T) {
	testutil.RequireRoot(t)
	res, err := RunFDs(t.TempDir(), []int{10, 2 * len(fdCycle)}, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	PrintFDs(io.Discard, res)
	for _, r := range res {
		if r.Dump <= 0 || r.Restore <= 0 || r.Freeze <= 0 || r.DumpCPU <= 0 || r.RestoreCPU <= 0 {
			t.Errorf("%d fds: not measured: %+v", r.Count, r)
		}
	}
}

// TestManyFDsLowSoftLimit dumps and restores a process holding 1500 fds
// while rtcr's own soft RLIMIT_NOFILE is 1024 (the usual default): the
// stubs inherit that limit, and restore must raise it for the fds step.
func TestManyFDsLowSoftLimit(t *testing.T) {
	testutil.RequireRoot(t)
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	if old.Max < 2000 {
		t.Skipf("hard RLIMIT_NOFILE %d is below the 2000 this test needs", old.Max)
	}
	// syscall.Setrlimit also makes children inherit the new limit.
	low := syscall.Rlimit{Cur: 1024, Max: old.Max}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
			t.Error(err)
		}
	}()
	if _, err := RunFDs(t.TempDir(), []int{1500}, 1, 1); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkFDs prints the fd benchmark for 10, 12 (one whole cycle of the
// mix), 1000 and RTCR_BENCH_FDS fds
// (default 10000), best of 3 (of 30 for 10). Run it with -benchtime=1x -v.
func BenchmarkFDs(b *testing.B) {
	testutil.RequireRoot(b)
	n := 10000
	if v, err := strconv.Atoi(os.Getenv("RTCR_BENCH_FDS")); err == nil && v > 0 {
		n = v
	}
	for i := 0; i < b.N; i++ {
		res, err := RunFDs("/dev/shm", []int{10, 12, 1000, n}, 3, 30)
		if err != nil {
			b.Fatal(err)
		}
		PrintFDs(os.Stdout, res)
		last := &res[len(res)-1]
		b.ReportMetric(float64(last.PerFD(last.DumpCPU, last.baseDumpCPU).Nanoseconds())/1000, "dump-cpu-µs/fd")
		b.ReportMetric(float64(last.PerFD(last.RestoreCPU, last.baseRestoreCPU).Nanoseconds())/1000, "restore-cpu-µs/fd")
	}
}

// TestFDProgMix checks the fd benchmark's process opens the kinds it
// claims, at the numbers it claims.
func TestFDProgMix(t *testing.T) {
	testutil.RequireRoot(t)
	work := t.TempDir()
	path := filepath.Join(work, "data")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cycle := 0
	for _, c := range fdCycle {
		cycle += c.fds
	}
	n := 2*cycle + 3 // two cycles and a remainder
	p, err := startText(work, fdProg(n, path))
	if err != nil {
		t.Fatal(err)
	}
	defer killTree(p.Pid)
	if err := waitFDs(p.Pid, n+3); err != nil {
		t.Fatal(err)
	}
	want := []string{path, path, "pipe:", "pipe:", "socket:", "socket:", "anon_inode:[eventfd]", "anon_inode:[eventpoll]",
		"/memfd:rtcr-bench", "anon_inode:[timerfd]", "anon_inode:[signalfd]", "/dev/null"}
	want = append(append(want, want...), path, path, "/dev/null")
	for i, w := range want {
		link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%d", p.Pid, i+3))
		if err != nil || !strings.HasPrefix(link, w) {
			t.Errorf("fd %d: %q (%v), want %s…", i+3, link, err, w)
		}
	}
	var rl unix.Rlimit
	if err := unix.Prlimit(p.Pid, unix.RLIMIT_NOFILE, nil, &rl); err != nil || rl.Cur != rl.Max {
		t.Errorf("RLIMIT_NOFILE %+v (%v): soft limit not raised to the hard one", rl, err)
	}
}
