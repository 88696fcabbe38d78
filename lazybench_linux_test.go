package rtcr_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rtcr/rtcr"
	"github.com/rtcr/rtcr/internal/testutil"
	"golang.org/x/sys/unix"
)

// BenchmarkLazyRestore: how long until a 1 GiB process runs again,
// restored lazily against a full restore of the same image in the same
// run (best of 3 each, the image in /dev/shm when there is one), and how
// long until every page of the lazy restore is in.
//
//	go test -run '^$' -bench BenchmarkLazyRestore -benchtime 1x .
func BenchmarkLazyRestore(b *testing.B) {
	testutil.RequireRoot(b)
	const mib = 1024
	bin := testutil.BuildC(b, "lazymem", false)
	tg := testutil.StartTarget(b, bin, "ready\n", "1024", "check")
	base := ""
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		base = "/dev/shm"
	}
	tmp, err := os.MkdirTemp(base, "rtcr-lazybench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(tmp) })
	dir := filepath.Join(tmp, "img")
	if _, err := rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: tg.Pid, Dir: dir}); err != nil {
		b.Fatalf("dump: %v", err)
	}
	_ = tg.Cmd.Wait()
	stop := func(pid int) {
		_ = unix.Kill(pid, unix.SIGKILL)
		var ws unix.WaitStatus
		_, _ = unix.Wait4(pid, &ws, 0, nil)
	}
	const runs = 3
	var full, lazyRun, allIn time.Duration
	best := func(cur *time.Duration, d time.Duration) {
		if *cur == 0 || d < *cur {
			*cur = d
		}
	}
	for i := 0; i < runs; i++ {
		st, err := rtcr.Restore(rtcr.RestoreOptions{Dir: dir})
		if err != nil {
			b.Fatalf("full restore: %v", err)
		}
		best(&full, st.Total)
		stop(st.Pid)
		st, err = rtcr.Restore(rtcr.RestoreOptions{Dir: dir, Lazy: true})
		if err != nil {
			b.Fatalf("lazy restore: %v", err)
		}
		best(&lazyRun, st.Total)
		in, err := st.Lazy.Wait()
		if err != nil {
			b.Fatalf("lazy restore: %v", err)
		}
		best(&allIn, in)
		b.Logf("run %d: full %v, lazy running after %v, all in after %v", i+1, full, st.Total, in)
		stop(st.Pid)
	}
	b.ReportMetric(float64(full.Microseconds())/1000, "full-ms")
	b.ReportMetric(float64(lazyRun.Microseconds())/1000, "lazy-run-ms")
	b.ReportMetric(float64(allIn.Microseconds())/1000, "lazy-allin-ms")
	b.Logf("%d MiB: full restore %v; lazy: running after %v (%.0fx sooner), all pages in after %v (best of %d)",
		mib, full, lazyRun, float64(full)/float64(lazyRun), allIn, runs)
}
