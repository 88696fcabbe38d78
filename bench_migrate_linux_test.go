package rtcr_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rtcr/rtcr/internal/testutil"
	"golang.org/x/sys/unix"
)

// TestMigrateDowntimeBench measures migrations of a hotwriter (MiB
// resident, every page filled, then random pages written at about 10 MB/s)
// started by `rtcr run` in namespace b to the rtcr serve in namespace a,
// with pre-copy, with --no-precopy, and with pre-copy to a serve with
// --lazy-restore in the same run, best of 3 each:
// the downtime (the last freeze on the source until the destination said
// its copy runs) and the total time of rtcr migrate, with where the
// downtime went. Every migrated copy checks all its pages against its own
// table afterwards. Images go to /dev/shm on both sides. A measurement,
// not a check: RTCR_MIGRATE_BENCH=1 runs it (RTCR_MIGRATE_BENCH_MIB,
// default 1024; RTCR_MIGRATE_BENCH_MAXFREEZE, default rtcr's;
// RTCR_MIGRATE_BENCH_MODES, a comma-separated subset of the modes;
// RTCR_MIGRATE_BENCH_LOG=1 logs both sides' step logs of every run;
// RTCR_MIGRATE_BENCH_RUNS, default 3; RTCR_MIGRATE_BENCH_KEEP=DIR keeps
// the last image received there).
func TestMigrateDowntimeBench(t *testing.T) {
	testutil.RequireRoot(t)
	if os.Getenv("RTCR_MIGRATE_BENCH") == "" {
		t.Skip("a measurement: RTCR_MIGRATE_BENCH=1 runs it")
	}
	mib := 1024
	if s := os.Getenv("RTCR_MIGRATE_BENCH_MIB"); s != "" {
		mib, _ = strconv.Atoi(s)
	}
	var extra []string
	if s := os.Getenv("RTCR_MIGRATE_BENCH_MAXFREEZE"); s != "" {
		extra = []string{"--max-freeze", s}
	}
	shm := shmDir(t)
	t.Setenv("TMPDIR", shm) // rtcr migrate's temporary images
	np := newNetPair(t)
	token := writeToken(t, t.TempDir())
	logs := t.TempDir()
	srv := startServe(t, np, filepath.Join(shm, "images"), token, "--log-file", filepath.Join(logs, "serve.log"))
	// A second server, on another port, restores lazily (--lazy-restore).
	lazyPort := "17071"
	lazySrv := startServe(t, np, filepath.Join(shm, "lazyimages"), token, "--listen", np.addrA+":"+lazyPort, "--lazy-restore", "--log-file", filepath.Join(logs, "lazyserve.log"))
	modes := []string{"precopy", "no-precopy", "precopy-lazy-restore"}
	if s := os.Getenv("RTCR_MIGRATE_BENCH_MODES"); s != "" {
		modes = strings.Split(s, ",")
	}
	type result struct{ down, total time.Duration }
	best := map[string]result{}
	runs := 3
	if s := os.Getenv("RTCR_MIGRATE_BENCH_RUNS"); s != "" {
		runs, _ = strconv.Atoi(s)
	}
	for run := 0; run < runs; run++ {
		for _, mode := range modes {
			mlog := filepath.Join(logs, mode+strconv.Itoa(run)+".log")
			args := append([]string{"--name", mode + strconv.Itoa(run), "--log-file", mlog}, extra...)
			to := srv
			switch mode {
			case "no-precopy":
				args = []string{"--name", mode + strconv.Itoa(run), "--no-precopy", "--log-file", mlog}
			case "precopy-lazy-restore":
				args = append(args, "--to", np.addrA+":"+lazyPort)
				to = lazySrv
			}
			r := migrateHot(t, np, to, mib, token, args)
			t.Logf("%s run %d: down %v, total %v", mode, run+1, r[0], r[1])
			if b, ok := best[mode]; !ok || r[0] < b.down {
				best[mode] = result{r[0], best[mode].total}
			}
			if b := best[mode]; b.total == 0 || r[1] < b.total {
				b.total = r[1]
				best[mode] = b
			}
			if mode == "precopy-lazy-restore" {
				// Its pages come in after the copy runs: wait for
				// them before the image goes.
				testutil.WaitForFile(t, lazySrv.log, "every page is in after", 120*time.Second)
			}
			if os.Getenv("RTCR_MIGRATE_BENCH_LOG") != "" {
				t.Logf("source:\n%s\ndestination:\n%s", readFile(mlog), readFile(filepath.Join(logs, "serve.log"))+readFile(filepath.Join(logs, "lazyserve.log")))
				_ = os.Truncate(filepath.Join(logs, "serve.log"), 0)
				_ = os.Truncate(filepath.Join(logs, "lazyserve.log"), 0)
			}
			if keep := os.Getenv("RTCR_MIGRATE_BENCH_KEEP"); keep != "" {
				_ = os.RemoveAll(keep)
				_ = os.Rename(filepath.Join(to.dir, mode+strconv.Itoa(run)), keep)
			}
			_ = os.RemoveAll(filepath.Join(to.dir, mode+strconv.Itoa(run)))
		}
	}
	p, n, l := best["precopy"], best["no-precopy"], best["precopy-lazy-restore"]
	t.Logf("best of 3, %d MiB at ~10 MB/s: pre-copy down %v total %v; --no-precopy down %v total %v; downtime ratio %.3f; pre-copy to serve --lazy-restore down %v total %v, ratio %.3f",
		mib, p.down, p.total, n.down, n.total, float64(p.down)/float64(n.down), l.down, l.total, float64(l.down)/float64(n.down))
}

var (
	downRe  = regexp.MustCompile(`down ([0-9.]+[µmn]?s) \(until`)
	totalRe = regexp.MustCompile(`total ([0-9.]+[µmn]?s), runs`)
)

// migrateHot starts a hotwriter of mib MiB writing about 10 MB/s under
// `rtcr run` in namespace b, migrates it with args, checks the copy's
// pages and returns the downtime and total time rtcr migrate reported.
func migrateHot(t *testing.T, np *netPair, srv *served, mib int, token string, args []string) [2]time.Duration {
	t.Helper()
	dir := t.TempDir()
	out, f := testutil.OutputFile(t, dir)
	defer f.Close()
	hot := testutil.BuildC(t, "hotwriter", false)
	pages := mib * 256
	// 16 random pages (64 KiB) then a pause of 6.4 ms: about 10 MB/s.
	cmd := np.command(np.b, testutil.BuildRtcr(t), "run", "--", hot, strconv.Itoa(pages), strconv.Itoa(pages), "6400")
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	testutil.WaitForFile(t, out, "ready", 120*time.Second)
	init := nsInit(t, cmd.Process.Pid)
	defer func() { _ = unix.Kill(init, unix.SIGKILL) }()
	time.Sleep(2 * time.Second) // writing at its pace
	mout, code := migrate(t, np, cmd.Process.Pid, token, args...)
	if code != 0 {
		t.Fatalf("rtcr migrate %v: exit %d: %s\nserve:\n%s", args, code, mout, readFile(srv.log))
	}
	t.Logf("%s", strings.TrimSpace(mout))
	restoredInit(t, mout)
	// The copy checks its pages: one hotwriter runs, the restored one.
	pids := programsOf(hot)
	if len(pids) != 1 {
		t.Fatalf("hotwriter processes %v after the move, want one", pids)
	}
	if err := unix.Kill(pids[0], syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	lines := testutil.WaitForLines(t, out, 2, 120*time.Second)
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, "OK") {
		t.Fatalf("the migrated hotwriter's check: %q", last)
	}
	var r [2]time.Duration
	for i, re := range []*regexp.Regexp{downRe, totalRe} {
		m := re.FindStringSubmatch(mout)
		if m == nil {
			t.Fatalf("no %v in %q", re, mout)
		}
		var err error
		if r[i], err = time.ParseDuration(m[1]); err != nil {
			t.Fatal(err)
		}
	}
	return r
}
