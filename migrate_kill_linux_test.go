package rtcr

import (
	"os/exec"
	"testing"

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
