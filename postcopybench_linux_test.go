package rtcr_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rtcr/rtcr/internal/testutil"
	"golang.org/x/sys/unix"
)

// TestPostCopyBench measures post-copy migration (rtcr migrate --lazy)
// between two network namespaces (netPair): a memwriter of
// RTCR_POSTCOPY_BENCH_MIB MiB (default 1024) that writes 16 pages every
// 6 ms (about 10 MB/s) moves, three times (a fresh writer each time);
// logged per run: the downtime (freeze until the copy runs on the
// destination) and the time until every page moved (the source is frozen
// that long), then the copy's memory checks must pass. A measurement, not
// a check: set RTCR_POSTCOPY_BENCH=1 to run it.
func TestPostCopyBench(t *testing.T) {
	testutil.RequireRoot(t)
	if os.Getenv("RTCR_POSTCOPY_BENCH") == "" {
		t.Skip("a measurement: RTCR_POSTCOPY_BENCH=1 runs it")
	}
	mib := 1024
	if s := os.Getenv("RTCR_POSTCOPY_BENCH_MIB"); s != "" {
		mib, _ = strconv.Atoi(s)
	}
	np := newNetPair(t)
	token := writeToken(t, t.TempDir())
	logs := t.TempDir()
	srv := startServe(t, np, filepath.Join(t.TempDir(), "images"), token, "--log-file", filepath.Join(logs, "serve.log"))
	re := regexp.MustCompile(`down ([0-9.]+[µm]?s) .*every page there after ([0-9.]+m?s)`)
	runs := 3
	if s := os.Getenv("RTCR_POSTCOPY_BENCH_RUNS"); s != "" {
		runs, _ = strconv.Atoi(s)
	}
	for run := 0; run < runs; run++ {
		w := startLazyWriter(t, np, mib, 6)
		mlog := filepath.Join(logs, fmt.Sprintf("migrate%d.log", run))
		out, code := migrate(t, np, w.cmd.Process.Pid, token, "--lazy", "--log-file", mlog)
		if code != 0 {
			t.Fatalf("rtcr migrate --lazy: exit %d: %s\nserve:\n%s", code, out, readFile(srv.log))
		}
		prog := restoredInit(t, out)
		m := re.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("rtcr migrate --lazy said %q", out)
		}
		down, _ := time.ParseDuration(m[1])
		all, _ := time.ParseDuration(m[2])
		t.Logf("run %d: %d MiB, writer ~10 MB/s: downtime %v, every page moved after %v (%.0f MiB/s)", run, mib, down, all, float64(mib)/all.Seconds())
		n := len(w.lines(t, 1))
		checkConsecutive(t, w.lines(t, n+60)) // a memory check of the copy at least
		_ = w.cmd.Wait()
		// The copy goes before the next run: left writing, each one's
		// 1 GiB and writes slowed the runs after it (every page moved
		// after 1.6, 2.4, 4.3 s in runs 1, 2, 3).
		killOrphan(t, prog)
		if os.Getenv("RTCR_POSTCOPY_BENCH_LOG") != "" {
			t.Logf("source:\n%s\ndestination:\n%s", readFile(mlog), readFile(filepath.Join(logs, "serve.log")))
		}
	}
}

// startWriter is startMemWriter with the writer's interval in ms.
func startLazyWriter(t *testing.T, np *netPair, mib, ms int) *memWriter {
	t.Helper()
	dir := t.TempDir()
	out, f := testutil.OutputFile(t, dir)
	defer f.Close()
	cmd := np.command(np.b, testutil.BuildRtcr(t), "run", "--", testutil.BuildC(t, "memwriter", false), strconv.Itoa(mib), strconv.Itoa(ms))
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	testutil.WaitForLines(t, out, 5, 120*time.Second)
	init := nsInit(t, cmd.Process.Pid)
	t.Cleanup(func() { _ = unix.Kill(init, unix.SIGKILL) })
	if strings.Contains(readFile(out), "FAIL") {
		t.Fatal(fmt.Sprintf("memwriter: %s", readFile(out)))
	}
	return &memWriter{cmd: cmd, out: out}
}
