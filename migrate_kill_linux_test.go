package rtcr

import (
	"errors"
	"log/slog"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/rtcr/rtcr/internal/tree"
	"golang.org/x/sys/unix"
)

// TestIdleThreads: the threads of a tree about to be killed by a
// migration go to SCHED_IDLE, and back to their own class and nice value
// after (the destination confirmed).
func TestIdleThreads(t *testing.T) {
	if unix.Geteuid() != 0 {
		t.Skip("needs root (idleThreads changes nothing without it)")
	}
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	pid := cmd.Process.Pid
	if err := unix.Setpriority(unix.PRIO_PROCESS, pid, 5); err != nil {
		t.Fatal(err)
	}
	restore := idleThreads(map[int][]int{pid: {pid}})
	a, err := unix.SchedGetAttr(pid, 0)
	if err != nil {
		t.Fatal(err)
	}
	if a.Policy != unix.SCHED_IDLE {
		t.Fatalf("policy %d while the tree dies, want SCHED_IDLE (%d)", a.Policy, unix.SCHED_IDLE)
	}
	restore()
	if a, err = unix.SchedGetAttr(pid, 0); err != nil {
		t.Fatal(err)
	}
	if a.Policy != unix.SCHED_NORMAL || a.Nice != 5 {
		t.Fatalf("policy %d nice %d after, want SCHED_OTHER (%d) nice 5", a.Policy, a.Nice, unix.SCHED_NORMAL)
	}
	// A thread gone meanwhile is skipped.
	idleThreads(map[int][]int{pid: {pid, 1 << 30}})()
}

// TestArmExitKill: a frozen tree with exit-kill armed dies when its
// tracer threads end without letting it go (rtcr killed after it told the
// destination to go, before its SIGKILLs): it never runs on.
func TestArmExitKill(t *testing.T) {
	if unix.Geteuid() != 0 {
		t.Skip("needs root")
	}
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill() }()
	f, err := tree.Freeze(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if !armExitKill(f, slog.New(slog.DiscardHandler), cmd.Process.Pid) {
		t.Fatal("exit-kill not armed")
	}
	for _, tr := range f.Tracers {
		tr.Close()
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("sleep ended with %v, want killed by SIGKILL", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("sleep runs on after its tracer threads ended")
	}
}
