package rtcr_test

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rtcr/rtcr"
	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/mem"
	"github.com/rtcr/rtcr/internal/testutil"
	"golang.org/x/sys/unix"
)

// gatedSource serves an image's pages like a local lazy restore, but
// holds every fetch larger than a fault's (the prefetcher's) until open
// is called: the test decides when the background copy may go on.
type gatedSource struct {
	src  *mem.PageSource
	gate chan struct{}
	once sync.Once
	slow time.Duration // added to every fetch
	fail atomic.Bool   // every fetch fails from now on
}

func newGatedSource(t *testing.T, dir string) *gatedSource {
	t.Helper()
	c, err := image.ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	pages := mem.PageFiles{}
	for _, p := range c.Processes {
		if p.PageFile == "" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, p.PageFile))
		if err != nil {
			t.Fatal(err)
		}
		pages[p.Pid] = [][]byte{b}
	}
	g := &gatedSource{src: mem.NewPageSource(c.Processes, pages, nil), gate: make(chan struct{})}
	t.Cleanup(g.open)
	return g
}

func (g *gatedSource) Fetch(pid int, addr uint64, buf []byte) error {
	time.Sleep(g.slow)
	if g.fail.Load() {
		return errors.New("the test's source fails")
	}
	if len(buf) > 64<<10 {
		<-g.gate
	}
	return g.src.Fetch(pid, addr, buf)
}

func (g *gatedSource) open() { g.once.Do(func() { close(g.gate) }) }

// lazyRestore restores dir lazily from src and checks the process runs
// untraced while pages are missing.
func lazyRestore(t *testing.T, tg *target, dir string, src *gatedSource) *rtcr.LazyRestore {
	t.Helper()
	opts := rtcr.RestoreOptions{Dir: dir, Lazy: true}
	if src != nil {
		opts.LazySource = src
	}
	st, err := rtcr.Restore(opts)
	if err != nil {
		t.Fatalf("lazy restore: %v", err)
	}
	if st.Pid != tg.pid || st.Lazy == nil {
		t.Fatalf("restored pid %d (lazy %v), want %d", st.Pid, st.Lazy != nil, tg.pid)
	}
	if tp := tracerPid(tg.pid); tp != 0 {
		t.Fatalf("restored process %d is still traced by %d", tg.pid, tp)
	}
	pr := st.Lazy.Progress()
	t.Logf("lazy restore of %d: running after %v, %d of %d pages in", tg.pid, st.Total, pr.In, pr.Pages)
	if pr.Early != 0 {
		t.Errorf("%d faults before the process ran: the restore needed missing pages itself", pr.Early)
	}
	return st.Lazy
}

// TestLazyRunsBeforePagesIn: a 1 GiB process restored lazily runs, and
// checks a first part of its memory, while the background copy is held
// (so most of its pages are provably not in); then every page comes in,
// its whole memory is right, and rtcr lets go of it.
func TestLazyRunsBeforePagesIn(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildC(t, "lazymem", false)
	tg := start(t, bin, "1024", "check")
	testutil.WaitForFile(t, tg.out, "ready\n", 60*time.Second)
	dir := tg.dump(false)
	src := newGatedSource(t, dir)
	lz := lazyRestore(t, tg, dir, src)
	tg.fire()
	testutil.WaitForFile(t, tg.out, "checked 128\n", 60*time.Second)
	pr := lz.Progress()
	if pr.In >= pr.Pages || pr.Pages < (1<<30)/image.PageSize {
		t.Fatalf("the process checked 128 MiB with %d of %d pages in: want most of 1 GiB still missing", pr.In, pr.Pages)
	}
	if pr.Faults == 0 {
		t.Fatalf("no fault served: %+v", pr)
	}
	t.Logf("checked 128 MiB with %d of %d pages in (%d faults)", pr.In, pr.Pages, pr.Faults)
	src.open()
	allIn, err := lz.Wait()
	if err != nil {
		t.Fatalf("lazy restore: %v", err)
	}
	if pr := lz.Progress(); pr.In != pr.Pages {
		t.Fatalf("done with %d of %d pages in", pr.In, pr.Pages)
	}
	t.Logf("all pages in after %v", allIn)
	if code := tg.wait(60 * time.Second); code != 0 || !strings.Contains(tg.output(), "OK\n") {
		t.Fatalf("after lazy restore: exit %d, output:\n%s", code, tg.output())
	}
}

// TestLazyLocal: the image's own page files (no source given), nothing
// held. Once every page is in, rtcr lets go: its tracer thread, the
// root's parent, ends, and the process lives on (its parent-death signal
// was put back), then finds all its memory right.
func TestLazyLocal(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildC(t, "lazymem", false)
	tg := start(t, bin, "256", "check")
	testutil.WaitForFile(t, tg.out, "ready\n", 30*time.Second)
	dir := tg.dump(false)
	lz := lazyRestore(t, tg, dir, nil)
	if _, err := lz.Wait(); err != nil {
		t.Fatalf("lazy restore: %v", err)
	}
	// The keeper of its userfaultfd is gone (killed and reaped).
	if k := keepersOf(os.Getpid()); len(k) != 0 {
		t.Fatalf("keepers %v still there once rtcr let go", k)
	}
	time.Sleep(200 * time.Millisecond) // the tracer thread exits meanwhile
	if s := state(tg.pid); s == 0 || s == 'Z' {
		t.Fatalf("restored %d died once rtcr let go (state %q)", tg.pid, s)
	}
	tg.fire()
	if code := tg.wait(60 * time.Second); code != 0 || !strings.Contains(tg.output(), "OK\n") {
		t.Fatalf("after lazy restore: exit %d, output:\n%s", code, tg.output())
	}
}

// TestLazyFork: the restored process forks while its pages are missing
// (the background copy held); the child, whose missing pages come through
// its own userfaultfd (the fork event), and the parent both find every
// word of their memory right.
func TestLazyFork(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildC(t, "lazymem", false)
	tg := start(t, bin, "128", "fork")
	testutil.WaitForFile(t, tg.out, "ready\n", 30*time.Second)
	dir := tg.dump(false)
	src := newGatedSource(t, dir)
	lz := lazyRestore(t, tg, dir, src)
	tg.fire()
	// Both check through faults alone; the copy is let go on after.
	if code := tg.wait(60 * time.Second); code != 0 || !strings.Contains(tg.output(), "OK\n") {
		t.Fatalf("after lazy restore with fork: exit %d, output:\n%s", code, tg.output())
	}
	src.open()
	if _, err := lz.Wait(); err != nil {
		t.Fatalf("lazy restore: %v", err)
	}
}

// TestLazyKilledRestorer: the restorer is killed (SIGKILL) while the
// restored process checks its memory, a quarter of it in, the rest
// missing: the process dies with it instead of going on with zero pages
// (it would report a wrong word). The restorer is this test binary run
// again as a helper (TestLazyHelperRestore), which holds the background
// copy for ever and serves each fault 1 ms late, so that the check is
// still under way when it dies.
func TestLazyKilledRestorer(t *testing.T) { killedRestorer(t, false, "check") }

// TestLazyRestorerFdsClosedFirst is TestLazyKilledRestorer with the worst
// order of a killed rtcr's exit made certain: its userfaultfds are closed
// first (its exit closes its fds before its tracer thread's exit sends the
// root its parent-death signal), the process is seen waiting a while,
// then the restorer dies. The keeper holds each userfaultfd until its
// process has exited, so the process waits at its missing page rather
// than read it as zero.
func TestLazyRestorerFdsClosedFirst(t *testing.T) { killedRestorer(t, true, "check") }

// TestLazyKilledRestorerNoDeathSignal is TestLazyKilledRestorer with a
// process that clears its parent-death signal as it runs (prctl): its
// keeper kills it when the restorer dies.
func TestLazyKilledRestorerNoDeathSignal(t *testing.T) { killedRestorer(t, false, "nodeath") }

func killedRestorer(t *testing.T, closeFirst bool, mode string) {
	testutil.RequireRoot(t)
	bin := testutil.BuildC(t, "lazymem", false)
	tg := start(t, bin, "256", mode)
	testutil.WaitForFile(t, tg.out, "ready\n", 30*time.Second)
	dir := tg.dump(false)
	helper, lines := startLazyHelper(t, dir)
	// The keeper of its userfaultfd, which holds it until the process is
	// dead (see README, rtcr killed).
	keepers := keepersOf(helper.Process.Pid)
	if len(keepers) != 1 {
		t.Fatalf("restorer %d: keepers %v, want one", helper.Process.Pid, keepers)
	}
	tg.fire()
	// It runs on the pages its faults bring before the restorer dies.
	testutil.WaitForFile(t, tg.out, "checked 64\n", 60*time.Second)
	if closeFirst {
		closeHelperFds(t, helper, lines)
		// Its faults are no longer served: it waits (or, without a
		// keeper, reads zeroes and reports a wrong word at once).
		time.Sleep(time.Second)
		if o := tg.output(); strings.Contains(o, "FAIL") || strings.Contains(o, "OK") {
			t.Fatalf("the process went on after its restorer closed its userfaultfds:\n%s", o)
		}
		if s := state(tg.pid); s == 0 || s == 'Z' {
			t.Fatalf("restored %d died when its restorer closed its userfaultfds (it should wait); output:\n%s", tg.pid, tg.output())
		}
	}
	if err := helper.Process.Signal(unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = helper.Wait()
	deadline2 := time.Now().Add(30 * time.Second)
	for {
		if s := state(tg.pid); s == 0 || s == 'Z' {
			break
		}
		if time.Now().After(deadline2) {
			t.Fatalf("restored %d still runs (state %q) after its restorer was killed; output:\n%s", tg.pid, state(tg.pid), tg.output())
		}
		time.Sleep(10 * time.Millisecond)
	}
	tg.done = true
	if o := tg.output(); strings.Contains(o, "FAIL") || strings.Contains(o, "OK") {
		t.Fatalf("the process went on after its restorer died:\n%s", o)
	}
	// The keeper ends with it: nothing is left behind.
	for _, k := range keepers {
		for s := state(k); s != 0 && s != 'Z'; s = state(k) {
			if time.Now().After(deadline2) {
				t.Fatalf("keeper %d still there (state %q) after restored %d died", k, s, tg.pid)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// startLazyHelper runs TestLazyHelperRestore on dir (a restorer that holds
// the background copy and serves each fault 1 ms late) and returns it
// once it says the restored processes run, with the rest of its output
// lines. setup, if given, may change the command before it starts (bin:
// the test binary to run instead of this one).
func startLazyHelper(t *testing.T, dir string, setup ...func(c *exec.Cmd)) (*exec.Cmd, chan string) {
	t.Helper()
	helper := exec.Command(os.Args[0], "-test.run=^TestLazyHelperRestore$", "-test.v")
	helper.Env = append(os.Environ(), "RTCR_LAZY_HELPER_DIR="+dir)
	for _, f := range setup {
		f(helper)
	}
	helper.Stderr = os.Stderr
	out, err := helper.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = helper.Process.Kill(); _ = helper.Wait() })
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	deadline := time.After(60 * time.Second)
	for running := false; !running; {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("helper ended before the restore ran")
			}
			running = strings.HasPrefix(l, "running ")
		case <-deadline:
			t.Fatal("helper: no restore within 60 s")
		}
	}
	return helper, lines
}

// closeHelperFds has the helper restorer close its userfaultfds (as its
// exit would, before its parent-death signals go out) and waits until it
// says it did.
func closeHelperFds(t *testing.T, helper *exec.Cmd, lines chan string) {
	t.Helper()
	if err := helper.Process.Signal(unix.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	for closed := false; !closed; {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("helper ended before closing its userfaultfds")
			}
			closed = l == "closed"
		case <-time.After(60 * time.Second):
			t.Fatal("helper: userfaultfds not closed within 60 s")
		}
	}
}

// keepersOf returns the children of process pid that hold a userfaultfd:
// the keepers of a lazy restore run by pid.
func keepersOf(pid int) []int {
	var out []int
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, task := range tasks {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, task.Name()))
		for _, f := range strings.Fields(string(b)) {
			child, _ := strconv.Atoi(f)
			fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", child))
			for _, fd := range fds {
				if l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", child, fd.Name())); l == "anon_inode:[userfaultfd]" {
					out = append(out, child)
					break
				}
			}
		}
	}
	return out
}

// TestLazyHelperRestore is TestLazyKilledRestorer's restorer: it runs only
// with RTCR_LAZY_HELPER_DIR set, restores that image lazily with the
// background copy held and each fault served 1 ms late, says "running
// PID" and waits to be killed.
func TestLazyHelperRestore(t *testing.T) {
	dir := os.Getenv("RTCR_LAZY_HELPER_DIR")
	if dir == "" {
		t.Skip("helper of TestLazyKilledRestorer")
	}
	src := newGatedSource(t, dir)
	src.slow = time.Millisecond
	st, err := rtcr.Restore(rtcr.RestoreOptions{Dir: dir, Lazy: true, LazySource: src})
	if err != nil {
		t.Fatalf("lazy restore: %v", err)
	}
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, unix.SIGUSR1)
	fmt.Printf("running %d\n", st.Pid)
	// SIGUSR1: close the userfaultfds (TestLazyRestorerFdsClosedFirst).
	<-usr1
	rtcr.CloseLazyFdsForTest(st.Lazy)
	fmt.Println("closed")
	_, _ = st.Lazy.Wait() // never: the copy is held
}

// TestLazyRemapDropUnmap: with the background copy held, the restored
// process moves half its memory (mremap), drops a MiB (MADV_DONTNEED,
// which must read zero afterwards, not the image's pages) and unmaps
// another, then finds the rest right where it now is.
func TestLazyRemapDropUnmap(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildC(t, "lazymem", false)
	tg := start(t, bin, "64", "remap")
	testutil.WaitForFile(t, tg.out, "ready\n", 30*time.Second)
	dir := tg.dump(false)
	src := newGatedSource(t, dir)
	lz := lazyRestore(t, tg, dir, src)
	tg.fire()
	if code := tg.wait(60 * time.Second); code != 0 || !strings.Contains(tg.output(), "OK\n") {
		t.Fatalf("after lazy restore with mremap/madvise/munmap: exit %d, output:\n%s", code, tg.output())
	}
	src.open()
	if _, err := lz.Wait(); err != nil {
		t.Fatalf("lazy restore: %v", err)
	}
}

// TestLazyThreadsSignals: four threads check their quarter of the memory
// through faults (the background copy held) while SIGALRM comes every
// millisecond, its handler reading lazy memory too: threads waiting for a
// page keep their state, signals meanwhile are handled.
func TestLazyThreadsSignals(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildC(t, "lazymem", false)
	tg := start(t, bin, "128", "threads")
	testutil.WaitForFile(t, tg.out, "ready\n", 30*time.Second)
	dir := tg.dump(false)
	src := newGatedSource(t, dir)
	lz := lazyRestore(t, tg, dir, src)
	tg.fire()
	if code := tg.wait(60 * time.Second); code != 0 || !strings.Contains(tg.output(), "OK ") {
		t.Fatalf("after lazy restore with threads and signals: exit %d, output:\n%s", code, tg.output())
	}
	t.Logf("output: %s", tg.output())
	src.open()
	if _, err := lz.Wait(); err != nil {
		t.Fatalf("lazy restore: %v", err)
	}
}
