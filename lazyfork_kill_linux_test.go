package rtcr

import (
	"bufio"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/rtcr/rtcr/internal/abi"
	"github.com/rtcr/rtcr/internal/lazy"
	"github.com/rtcr/rtcr/internal/testutil"
	"golang.org/x/sys/unix"
)

// shWithChild starts sh with a child (sleep) and returns both pids and a
// pidfd of sh; sh and its child are killed at the end of the test.
func shWithChild(t *testing.T) (sh, kid, shFd int) {
	t.Helper()
	cmd := exec.Command("sh", "-c", "sleep 100 & echo $!; exec sleep 200")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	kid, err = strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatal(err)
	}
	fd, err := unix.PidfdOpen(cmd.Process.Pid, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		unix.Close(fd)
		_ = unix.Kill(kid, unix.SIGKILL)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd.Process.Pid, kid, fd
}

// exitedPidfd returns a pidfd of a process that has exited and been
// reaped: its pid may be anyone's by now.
func exitedPidfd(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.PidfdOpen(cmd.Process.Pid, 0)
	if err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// A failed restore's killUnfound looks at a host's children only while
// the host's pidfd says it is the recorded process: a host pid that has
// exited and now names an unrelated process (here sh) must not have that
// process's children killed, and the host is dropped.
func TestLazyKillUnfoundReusedHostPid(t *testing.T) {
	testutil.RequireRoot(t)
	sh, kid, _ := shWithChild(t)
	l := &LazyRestore{forks: forkState{
		hosts:   map[int]int{7: sh},
		hostFds: map[int]int{7: exitedPidfd(t)},
		known:   map[int]bool{},
	}}
	l.killUnfound()
	if gone(kid) {
		t.Fatalf("killUnfound killed %d, the child of an unrelated process %d holding a recorded host's old pid", kid, sh)
	}
	if _, ok := l.forks.hosts[7]; ok {
		t.Fatalf("the exited host is still recorded: %v", l.forks.hosts)
	}
}

// A failed restore kills the children of the served processes that were
// neither restored nor found, with no fork pending too (a child dropped
// with every page in, or one that exec'd): otherwise it outlives the
// failed restore (post-copy: next to the source's resumed original).
func TestLazyKillUnfoundNoForkPending(t *testing.T) {
	testutil.RequireRoot(t)
	sh, kid, shFd := shWithChild(t)
	l := &LazyRestore{forks: forkState{
		hosts:   map[int]int{7: sh},
		hostFds: map[int]int{7: shFd},
		known:   map[int]bool{sh: true},
	}}
	l.killUnfound()
	deadline := time.Now().Add(30 * time.Second)
	for !gone(kid) {
		if time.Now().After(deadline) {
			t.Fatalf("child %d of served process %d not killed by killUnfound with no fork pending", kid, sh)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if gone(sh) {
		t.Fatalf("killUnfound killed the served process %d itself", sh)
	}
}

// nopSource serves zero pages (matchForks' probe brings one in).
type nopSource struct{}

func (nopSource) Fetch(pid int, addr uint64, buf []byte) error { return nil }

// newUffd returns a userfaultfd of the test process (nothing registered:
// a copy through it lands nowhere, ENOENT).
func newUffd(t *testing.T) int {
	t.Helper()
	fd, _, errno := unix.Syscall(unix.SYS_USERFAULTFD, unix.O_CLOEXEC|unix.O_NONBLOCK, 0, 0)
	if errno != 0 {
		t.Skip("userfaultfd:", errno)
	}
	api := abi.UffdioAPI{API: abi.UFFD_API}
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, fd, abi.UFFDIO_API, uintptr(unsafe.Pointer(&api))); errno != 0 {
		t.Fatal("UFFDIO_API:", errno)
	}
	return int(fd)
}

// stackOf returns the range of process pid's [stack] mapping.
func stackOf(t *testing.T, pid int) (uint64, uint64) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasSuffix(line, "[stack]") {
			span, _, _ := strings.Cut(line, " ")
			lo, hi, _ := strings.Cut(span, "-")
			a, _ := strconv.ParseUint(lo, 16, 64)
			z, _ := strconv.ParseUint(hi, 16, 64)
			return a, z
		}
	}
	t.Fatalf("no stack in /proc/%d/maps", pid)
	return 0, 0
}

// A fork whose child had every page in was dropped, its child A not
// recorded; a later fork E2 of the same parent whose child is not there
// yet must not be matched to A by the one-fork-one-kid shortcut (A has
// its parent's mappings): it is probed (and left pending here).
func TestLazyMatchForksDroppedChildNotTaken(t *testing.T) {
	testutil.RequireRoot(t)
	p, a, pFd := shWithChild(t)
	srv, err := lazy.NewServer(nopSource{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	lo, hi := stackOf(t, a)
	idP := srv.Add(lazy.Proc{Pid: 1, Fd: newUffd(t)})
	idA := srv.Add(lazy.Proc{Pid: 1, Fd: newUffd(t)}) // every page in
	idB := srv.Add(lazy.Proc{Pid: 1, Fd: newUffd(t), Runs: []lazy.Range{{Start: lo, End: hi}}})
	now := time.Now()
	l := &LazyRestore{srv: srv, log: slog.New(slog.DiscardHandler), forks: forkState{
		hosts: map[int]int{idP: p}, hostFds: map[int]int{idP: pFd}, known: map[int]bool{p: true},
		pending: []lazy.Fork{{Parent: idP, Child: idA, Read: now}, {Parent: idP, Child: idB, Read: now}},
	}}
	defer l.closeChildPidfds()
	if err := l.matchForks(); err != nil {
		t.Fatalf("matchForks: %v", err)
	}
	if got, ok := l.forks.hosts[idB]; ok {
		t.Fatalf("fork E2 matched to %d (A, the dropped fork's child, is %d)", got, a)
	}
}
