package rtcr

import (
	"bufio"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

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
