package rtcr_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rtcr/rtcr"
	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/testutil"
)

// preforkWorkers and preforkKiB shape the pre-fork tree of the tests: the
// issue's server (a parent that filled 5.5 MiB, then forked 31 workers).
const (
	preforkWorkers = 31
	preforkKiB     = 5632
)

// startPrefork starts testdata/prefork.c with workers workers and waits
// until every worker is forked and has written its own pages.
func startPrefork(t *testing.T, workers int) *target {
	t.Helper()
	testutil.RequireRoot(t)
	bin := testutil.BuildC(t, "prefork", false)
	tg := start(t, bin, "trigger", strconv.Itoa(workers), strconv.Itoa(preforkKiB), "step")
	testutil.WaitForFile(t, tg.out, "ready\n", 60*time.Second)
	t.Cleanup(func() { killTree(tg.pid) })
	return tg
}

// finishPrefork fires the trigger of a restored prefork tree: every worker
// checks its memory, the parent reaps them and checks its own.
func finishPrefork(t *testing.T, tg *target) {
	t.Helper()
	tg.fire()
	if code := tg.wait(60 * time.Second); code != 0 || !strings.Contains(tg.output(), "OK\n") {
		t.Fatalf("prefork after restore: exit %d, output:\n%s", code, tg.output())
	}
}

// pageFileBytes is the size of every page file of the image c.
func pageFileBytes(c *image.Checkpoint) int64 {
	var n int64
	for _, p := range c.Processes {
		n += p.PageFileSize
	}
	return n
}

// TestPreforkShared checkpoints a pre-fork tree (a parent that filled 5.5
// MiB, then forked 31 workers; each worker wrote 2 pages of its own, the
// parent 4 pages after the forks): the image holds the shared pages once,
// and the restored tree shares them again copy-on-write: image size and
// restored PSS of anonymous memory stay within 2x of the original tree's
// (its unique memory). Then every process checks its bytes.
func TestPreforkShared(t *testing.T) {
	tg := startPrefork(t, preforkWorkers)
	pids := treePids(t, tg.pid)
	if len(pids) != preforkWorkers+1 {
		t.Fatalf("tree of %d processes, want %d", len(pids), preforkWorkers+1)
	}
	orig := pssAnon(t, pids)
	dir := tg.dump(false)
	c, err := image.ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	size := pageFileBytes(c)
	shared := 0
	for _, p := range c.Processes[1:] {
		shared += sharedWith(c, p.Pid, tg.pid)
	}
	tg.restore(dir)
	got := treePids(t, tg.pid)
	if len(got) != len(pids) {
		t.Fatalf("restored tree of %d processes, want %d", len(got), len(pids))
	}
	restored := pssAnon(t, got)
	t.Logf("pre-fork tree of %d: anonymous PSS %d KiB before the dump, image %d KiB (%d worker pages named as the parent's), restored PSS %d KiB",
		len(pids), orig>>10, size>>10, shared, restored>>10)
	if size > 2*orig {
		t.Errorf("image holds %d KiB, more than twice the tree's unique memory (%d KiB)", size>>10, orig>>10)
	}
	if restored > 2*orig {
		t.Errorf("restored tree uses %d KiB, more than twice the original's (%d KiB)", restored>>10, orig>>10)
	}
	finishPrefork(t, tg)
}

// TestPreforkIncremental: an incremental chain of a pre-fork tree where
// the parent writes pages it shared with every worker between the two
// checkpoints. The workers' copies of those pages became theirs alone
// without being written by them (their tracking does not see it): the
// increment must still give them the old bytes and the parent the new.
func TestPreforkIncremental(t *testing.T) {
	tg := startPrefork(t, 4)
	ck := t.TempDir()
	dump := func(name, parent string, leave bool) *image.Checkpoint {
		t.Helper()
		opts := rtcr.DumpOptions{Pid: tg.pid, Dir: filepath.Join(ck, name), LeaveRunning: leave, TrackMem: true}
		if parent != "" {
			opts.Parent = "../" + parent
		}
		st, err := rtcr.Dump(context.Background(), opts)
		if err != nil {
			t.Fatalf("dump %s: %v", name, err)
		}
		t.Logf("dump %s: %d KiB here, %d pages in parents", name, st.PageBytes>>10, st.ParentPages)
		c, err := image.ReadManifest(opts.Dir)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	pids := treePids(t, tg.pid)
	before := pssAnon(t, pids)
	c1 := dump("1", "", true)
	// The dump read the shared pages without unsharing them: the tree
	// left running still shares them (process_vm_readv would have given
	// the parent a copy of each).
	if after := pssAnon(t, pids); after > before+before/4 {
		t.Errorf("the tree left running uses %d KiB of anonymous memory after the dump, %d KiB before", after>>10, before>>10)
	}
	if err := os.WriteFile(filepath.Join(tg.dir, "step"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	testutil.WaitForFile(t, tg.out, "stepped\n", 60*time.Second)
	c2 := dump("2", "1", false)
	tg.reap()
	// The parent's 32 written pages are in the increment; the workers'
	// copies of them are the old bytes, named in image 1.
	if here := pageFileBytes(c2); here > pageFileBytes(c1)/2 {
		t.Errorf("increment holds %d KiB, the full image %d KiB", here>>10, pageFileBytes(c1)>>10)
	}
	for _, p := range c2.Processes[1:] {
		if sharedWith(c2, p.Pid, tg.pid) == 0 {
			t.Errorf("worker %d names no page of the parent in the increment", p.Pid)
		}
	}
	for _, p := range c2.Processes[1:] {
		deadline := time.Now().Add(30 * time.Second)
		for !pidFree(p.Pid) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
	tg.restore(filepath.Join(ck, "2"))
	finishPrefork(t, tg)
}

// treePids returns pid and its children (from /proc/PID/task/PID/children).
func treePids(t *testing.T, pid int) []int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		t.Fatalf("children of %d: %v", pid, err)
	}
	pids := []int{pid}
	for _, f := range strings.Fields(string(b)) {
		n, _ := strconv.Atoi(f)
		pids = append(pids, n)
	}
	return pids
}

// pssAnon returns the sum of Pss_Anon (bytes) of /proc/PID/smaps_rollup
// over pids: the anonymous memory they use, each page shared by k of them
// counted 1/k in each.
func pssAnon(t *testing.T, pids []int) int64 {
	t.Helper()
	var sum int64
	for _, pid := range pids {
		f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
		if err != nil {
			t.Fatalf("smaps_rollup of %d: %v", pid, err)
		}
		sc := bufio.NewScanner(f)
		found := false
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "Pss_Anon:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
				sum += kb << 10
				found = true
			}
		}
		f.Close()
		if !found {
			t.Skipf("no Pss_Anon in /proc/%d/smaps_rollup (kernel before 5.x)", pid)
		}
	}
	return sum
}

// TestPreforkRun checkpoints a pre-fork tree started by `rtcr run` (its own
// pid namespace): the workers' shared pages name the parent by its pid in
// the namespace, and the restored tree shares them again.
func TestPreforkRun(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildC(t, "prefork", false)
	tg := start(t, testutil.BuildRtcr(t), "run", "--", bin, "trigger", "8", strconv.Itoa(preforkKiB), "step")
	testutil.WaitForFile(t, tg.out, "ready\n", 60*time.Second)
	dir := filepath.Join(t.TempDir(), "img")
	if _, err := rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: tg.pid, Dir: dir}); err != nil {
		t.Fatalf("dump: %v", err)
	}
	tg.waitOriginal()
	c, err := image.ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	// The init (1), the program (2) and its 8 workers.
	if len(c.Processes) != 10 {
		t.Fatalf("image of %d processes, want 10", len(c.Processes))
	}
	for _, p := range c.Processes[2:] {
		if p.Ppid != 2 || sharedWith(c, p.Pid, 2) == 0 {
			t.Errorf("worker %d (parent %d) names no page of pid 2", p.Pid, p.Ppid)
		}
	}
	st, err := rtcr.Restore(rtcr.RestoreOptions{Dir: dir})
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	tg.pid, tg.done = st.Pid, false
	t.Cleanup(func() { killTree(st.Program) })
	restored := pssAnon(t, treePids(t, st.Program))
	t.Logf("image %d KiB, restored tree of the program: anonymous PSS %d KiB", pageFileBytes(c)>>10, restored>>10)
	if restored > 2*preforkKiB<<10 {
		t.Errorf("restored tree uses %d KiB, the parent's memory is %d KiB", restored>>10, preforkKiB)
	}
	finishPrefork(t, tg)
}

// TestPreforkSeriesMerge runs a periodic series (three checkpoints, two
// kept) of a pre-fork tree whose parent writes shared pages between the
// first two: removing the oldest merges it into its child, moving the
// pages the workers share with the parent once (by the parent's page
// file) and re-pointing the third image's runs. The newest restores with
// the right bytes and the pages shared.
func TestPreforkSeriesMerge(t *testing.T) {
	tg := startPrefork(t, 4)
	pids := treePids(t, tg.pid)
	ck := filepath.Join(t.TempDir(), "ck")
	cp, err := rtcr.NewCheckpointer(tg.pid, rtcr.CheckpointerOptions{Dir: ck, Keep: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Close()
	for i := 1; i <= 3; i++ {
		if _, err := cp.Checkpoint(context.Background()); err != nil {
			t.Fatalf("checkpoint %d: %v", i, err)
		}
		if i == 1 {
			if err := os.WriteFile(filepath.Join(tg.dir, "step"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			testutil.WaitForFile(t, tg.out, "stepped\n", 60*time.Second)
		}
	}
	if err := cp.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(ck, "1")); err == nil {
		t.Fatalf("checkpoint 1 still there with Keep 2")
	}
	c, err := image.ReadManifest(filepath.Join(ck, "latest"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range c.Processes[1:] {
		if sharedWith(c, p.Pid, tg.pid) == 0 {
			t.Errorf("worker %d names no page of the parent after the merge", p.Pid)
		}
	}
	for _, pid := range pids[1:] {
		_ = syscallKill(pid)
	}
	tg.kill()
	tg.done = false
	for _, pid := range pids {
		deadline := time.Now().Add(30 * time.Second)
		for !pidFree(pid) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
	tg.restore(filepath.Join(ck, "latest"))
	restored := pssAnon(t, treePids(t, tg.pid))
	t.Logf("restored from the merged series: anonymous PSS %d KiB", restored>>10)
	if restored > 2*preforkKiB<<10 {
		t.Errorf("restored tree uses %d KiB, the parent's memory is %d KiB", restored>>10, preforkKiB)
	}
	finishPrefork(t, tg)
}
