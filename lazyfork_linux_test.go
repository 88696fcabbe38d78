package rtcr_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rtcr/rtcr/internal/testutil"
	"golang.org/x/sys/unix"
)

// forkedChildren waits until the forks or tforks mode of lazymem has said
// four "child PID" lines (three children and a grandchild, or a child of
// each of four threads), each followed by
// "child PID checked 64" (it ran on pages its faults brought), and
// returns a pidfd of each, by pid.
func forkedChildren(t *testing.T, tg *target) map[int]int { return forkedN(t, tg, 4) }

// forkedN is forkedChildren for n children.
func forkedN(t *testing.T, tg *target, n int) map[int]int {
	t.Helper()
	re := regexp.MustCompile(`(?m)^child (\d+) checked 64$`)
	deadline := time.Now().Add(60 * time.Second)
	for {
		o := tg.output()
		if strings.Contains(o, "FAIL") {
			t.Fatalf("a process read a wrong word:\n%s", o)
		}
		if m := re.FindAllStringSubmatch(o, -1); len(m) >= n {
			fds := map[int]int{}
			for _, x := range m {
				pid, _ := strconv.Atoi(x[1])
				fd, err := unix.PidfdOpen(pid, 0)
				if err != nil {
					t.Fatalf("child %d: pidfd_open: %v (output:\n%s)", pid, err, o)
				}
				t.Cleanup(func() { _ = unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0); unix.Close(fd) })
				fds[pid] = fd
			}
			return fds
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %d children checking within 60 s; output:\n%s", n, o)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitKeepers waits until process pid has n keepers (children holding a
// userfaultfd) and returns them.
func waitKeepers(t *testing.T, pid, n int) []int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		k := keepersOf(pid)
		if len(k) == n {
			return k
		}
		if time.Now().After(deadline) {
			t.Fatalf("restorer %d: keepers %v, want %d", pid, k, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// pidfdExited reports whether the process of pidfd has exited.
func pidfdExited(fd int) bool {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	n, _ := unix.Poll(fds, 0)
	return n > 0
}

// TestLazyForksKilledRestorer: a lazily restored process forks three
// children (one of which forks a grandchild) while most pages are missing
// (the background copy held, each fault served 1 ms late); they all run
// on the pages their faults bring; then the restorer is killed (SIGKILL).
// Every process of the tree dies, the children too (a keeper each holds
// their userfaultfd and kills them), none reads a missing page as zero
// (it would report a wrong word), none is left waiting for a page, and
// no keeper is left behind.
func TestLazyForksKilledRestorer(t *testing.T) { forksKilledRestorer(t, false, "forks") }

// TestLazyThreadForksKilledRestorer is TestLazyForksKilledRestorer with
// four threads forking at the same moment: the fork events come together,
// and their children are told apart by their memory (a page brought in
// through one child's userfaultfd shows in that child's pagemap only).
func TestLazyThreadForksKilledRestorer(t *testing.T) { forksKilledRestorer(t, false, "tforks") }

// TestLazyForksFdsClosedFirst is TestLazyForksKilledRestorer with the
// restorer's userfaultfds closed first (what its exit does before the
// parent-death signals): the children, whose keepers hold theirs, wait at
// their missing pages instead of reading zeroes; then the restorer dies
// and they die with it.
func TestLazyForksFdsClosedFirst(t *testing.T) { forksKilledRestorer(t, true, "forks") }

// TestLazyDaemonKilledRestorer: the restored process forks a child that
// forks a grandchild and exits at once (a daemon): the grandchild,
// reparented before it could be found among its parent's children, is
// found among every process (and told by its memory), gets a keeper, and
// dies with the restorer.
func TestLazyDaemonKilledRestorer(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildC(t, "lazymem", false)
	tg := start(t, bin, "256", "daemon")
	testutil.WaitForFile(t, tg.out, "ready\n", 30*time.Second)
	dir := tg.dump(false)
	helper, lines := startLazyHelper(t, dir)
	killLazyTreeN(t, tg, helper, lines, false, 1)
}

func forksKilledRestorer(t *testing.T, closeFirst bool, mode string) {
	testutil.RequireRoot(t)
	bin := testutil.BuildC(t, "lazymem", false)
	tg := start(t, bin, "256", mode)
	testutil.WaitForFile(t, tg.out, "ready\n", 30*time.Second)
	dir := tg.dump(false)
	helper, lines := startLazyHelper(t, dir)
	killLazyTree(t, tg, helper, lines, closeFirst)
}

// killLazyTree fires tg (lazymem forks, restored lazily by helper, the
// background copy held), waits until its children run, kills the helper
// (closeFirst: has it close its userfaultfds first, and sees every process
// wait) and checks that the whole tree dies, none having read a wrong
// word, and that no keeper is left.
func killLazyTree(t *testing.T, tg *target, helper *exec.Cmd, lines chan string, closeFirst bool) {
	killLazyTreeN(t, tg, helper, lines, closeFirst, 4)
}

// killLazyTreeN is killLazyTree for a tree of n children.
func killLazyTreeN(t *testing.T, tg *target, helper *exec.Cmd, lines chan string, closeFirst bool, n int) {
	t.Helper()
	rootFd, err := unix.PidfdOpen(tg.pid, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(rootFd)
	tg.fire()
	kids := forkedN(t, tg, n)
	// One keeper for the restored process, one for each child.
	keepers := waitKeepers(t, helper.Process.Pid, 1+len(kids))
	t.Logf("children %v, keepers %v", kids, keepers)
	if closeFirst {
		closeHelperFds(t, helper, lines)
		// No fault is served now: every process waits (without the
		// keepers the children would read zeroes and say FAIL at once).
		time.Sleep(time.Second)
		if o := tg.output(); strings.Contains(o, "FAIL") || strings.Contains(o, "OK") {
			t.Fatalf("a process went on after its restorer closed its userfaultfds:\n%s", o)
		}
		for pid, fd := range kids {
			if pidfdExited(fd) {
				t.Fatalf("child %d died when its restorer closed its userfaultfds (it should wait); output:\n%s", pid, tg.output())
			}
		}
	}
	if err := helper.Process.Signal(unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = helper.Wait()
	deadline := time.Now().Add(30 * time.Second)
	for pid, fd := range kids {
		for !pidfdExited(fd) {
			if time.Now().After(deadline) {
				t.Fatalf("child %d still there (state %q) after its restorer was killed; output:\n%s", pid, state(pid), tg.output())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	for !pidfdExited(rootFd) {
		if time.Now().After(deadline) {
			t.Fatalf("restored %d still there (state %q) after its restorer was killed; output:\n%s", tg.pid, state(tg.pid), tg.output())
		}
		time.Sleep(10 * time.Millisecond)
	}
	tg.done = true
	if o := tg.output(); strings.Contains(o, "FAIL") || strings.Contains(o, "OK") {
		t.Fatalf("a process went on after its restorer died:\n%s", o)
	}
	for _, k := range keepers {
		for s := state(k); s != 0 && s != 'Z'; s = state(k) {
			if time.Now().After(deadline) {
				t.Fatalf("keeper %d still there (state %q) after the tree died", k, s)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// TestLazyForks: the same tree, rtcr not killed: the children each get a
// keeper while pages are missing; once the background copy goes on, every
// process finds all its memory right, rtcr lets go, and the keepers are
// gone.
func TestLazyForks(t *testing.T) { lazyForks(t, "forks") }

// TestLazyThreadForks is TestLazyForks with four threads forking at the
// same moment.
func TestLazyThreadForks(t *testing.T) { lazyForks(t, "tforks") }

func lazyForks(t *testing.T, mode string) {
	testutil.RequireRoot(t)
	bin := testutil.BuildC(t, "lazymem", false)
	tg := start(t, bin, "256", mode)
	testutil.WaitForFile(t, tg.out, "ready\n", 30*time.Second)
	dir := tg.dump(false)
	src := newGatedSource(t, dir)
	src.slow = time.Millisecond
	lz := lazyRestore(t, tg, dir, src)
	tg.fire()
	kids := forkedChildren(t, tg)
	k := waitKeepers(t, os.Getpid(), 1+len(kids))
	t.Logf("children %v, keepers %v", kids, k)
	src.open()
	if _, err := lz.Wait(); err != nil {
		t.Fatalf("lazy restore: %v", err)
	}
	if k := keepersOf(os.Getpid()); len(k) != 0 {
		t.Fatalf("keepers %v still there once rtcr let go", k)
	}
	if code := tg.wait(120 * time.Second); code != 0 || !strings.Contains(tg.output(), "OK\n") {
		t.Fatalf("after lazy restore with forks: exit %d, output:\n%s", code, tg.output())
	}
}

// TestLazyForksKilledUnprivileged is TestLazyForksKilledRestorer with a
// restorer that is not root: uid 65534 with CAP_CHECKPOINT_RESTORE and
// CAP_SYS_PTRACE only (as TestUnprivileged), restoring its own image of
// its own process. Its keepers (stubs it starts, with its credentials)
// take pidfds of the processes and of the restorer, and kill the children
// when it dies: every process dies, none reads a wrong word, no keeper is
// left.
func TestLazyForksKilledUnprivileged(t *testing.T) {
	u := newUnprivileged(t)
	base := filepath.Dir(u.rtcr)
	bin := copyExecutable(t, testutil.BuildC(t, "lazymem", false), filepath.Join(base, "lazymem"))
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	test := copyExecutable(t, self, filepath.Join(base, "rtcr.test"))
	cwd := filepath.Join(u.home, "cwd")
	if err := os.Mkdir(cwd, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(cwd, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	out, f := testutil.OutputFile(t, cwd)
	defer f.Close()
	if err := os.Chown(out, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "256", "forks")
	cmd.Dir, cmd.Stdout, cmd.Stderr = cwd, f, f
	cmd.SysProcAttr = attrs()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tg := &target{t: t, cmd: cmd, pid: cmd.Process.Pid, out: out, dir: cwd, trigger: filepath.Join(cwd, "trigger")}
	t.Cleanup(tg.kill)
	testutil.WaitForFile(t, out, "ready\n", 30*time.Second)
	img := filepath.Join(u.home, "img")
	if o, err := u.run("dump", "--pid", strconv.Itoa(tg.pid), "--dir", img); err != nil {
		t.Fatalf("dump as 65534: %v\n%s", err, o)
	}
	tg.reap()
	helper, lines := startLazyHelper(t, img, func(c *exec.Cmd) {
		c.Path, c.Args[0], c.Dir = test, test, u.home
		c.SysProcAttr = attrs(unix.CAP_CHECKPOINT_RESTORE, unix.CAP_SYS_PTRACE)
	})
	if uid := statusField(t, helper.Process.Pid, "Uid"); uid != "65534 65534 65534 65534" {
		t.Fatalf("restorer %d runs as uid %s", helper.Process.Pid, uid)
	}
	killLazyTree(t, tg, helper, lines, false)
}

// TestLazyForksSourceFails: the page source fails while the children
// forked during the lazy restore still miss pages: the restore fails and
// kills the whole tree, the children too (they cannot go on without their
// pages), and no keeper is left.
func TestLazyForksSourceFails(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildC(t, "lazymem", false)
	tg := start(t, bin, "256", "forks")
	testutil.WaitForFile(t, tg.out, "ready\n", 30*time.Second)
	dir := tg.dump(false)
	src := newGatedSource(t, dir)
	src.slow = time.Millisecond
	lz := lazyRestore(t, tg, dir, src)
	rootFd, err := unix.PidfdOpen(tg.pid, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(rootFd)
	tg.fire()
	kids := forkedChildren(t, tg)
	waitKeepers(t, os.Getpid(), 1+len(kids))
	src.fail.Store(true)
	src.open()
	if _, err := lz.Wait(); err == nil || !strings.Contains(err.Error(), "the test's source fails") {
		t.Fatalf("lazy restore with a failing source: %v", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for pid, fd := range kids {
		for !pidfdExited(fd) {
			if time.Now().After(deadline) {
				t.Fatalf("child %d still there (state %q) after the restore failed; output:\n%s", pid, state(pid), tg.output())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if !pidfdExited(rootFd) {
		t.Fatalf("restored %d still there after the restore failed", tg.pid)
	}
	tg.done = true
	if o := tg.output(); strings.Contains(o, "FAIL") || strings.Contains(o, "OK") {
		t.Fatalf("a process went on after the restore failed:\n%s", o)
	}
	if k := keepersOf(os.Getpid()); len(k) != 0 {
		t.Fatalf("keepers %v still there after the restore failed", k)
	}
}
