package tree

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/rtcr/rtcr/internal/procfs"
	"github.com/rtcr/rtcr/internal/ptrace"
	"golang.org/x/sys/unix"
)

// TestReleaseOfKilledProcess: a process killed while frozen (after its
// image was complete, say) makes Release report it in Exited, not fail
// with "detach: no such process"; the live one beside it is released.
func TestReleaseOfKilledProcess(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (ptrace): run as root, CI does")
	}
	// sh and its child sleep: the child is killed, the parent lives on.
	sh := exec.Command("sh", "-c", "sleep 1000 & wait")
	if err := sh.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sh.Process.Kill(); _ = sh.Wait() }()
	var child int
	deadline := time.Now().Add(10 * time.Second)
	for child == 0 {
		m, err := ChildMap()
		if err != nil {
			t.Fatal(err)
		}
		if c := m[sh.Process.Pid]; len(c) == 1 {
			child = c[0]
		} else if time.Now().After(deadline) {
			t.Fatal("sh did not start sleep")
		}
		time.Sleep(5 * time.Millisecond)
	}
	defer unix.Kill(child, unix.SIGKILL)
	err := ptrace.Run(func() error {
		f, err := Freeze(sh.Process.Pid)
		if err != nil {
			return err
		}
		if err := unix.Kill(child, unix.SIGKILL); err != nil {
			_ = f.Release()
			return err
		}
		for !dead(child) {
			time.Sleep(time.Millisecond)
		}
		if err := f.Release(); err != nil {
			t.Errorf("release after %d was killed: %v", child, err)
		}
		if len(f.Exited) != 1 || f.Exited[0] != child {
			t.Errorf("Exited = %v, want [%d]", f.Exited, child)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if st, err := procfs.ReadStatus(sh.Process.Pid); err != nil || st.TracerPid != 0 || st.State == 't' {
		t.Fatalf("sh %d after release: %+v, %v", sh.Process.Pid, st, err)
	}
}

// TestStoppedChildrenMatchesChildMap: for a frozen tree, the children read
// from /proc/PID/task/TID/children are those the scan of every process
// finds, and Descendants walks the tree in freeze order; every process has
// its tracer, and after Release none is traced.
func TestStoppedChildrenMatchesChildMap(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (ptrace): run as root, CI does")
	}
	sh := exec.Command("sh", "-c", "sleep 1000 & sleep 1000 & (sleep 1000 & wait) & wait")
	if err := sh.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sh.Process.Kill(); _ = sh.Wait() }()
	root := sh.Process.Pid
	deadline := time.Now().Add(30 * time.Second)
	for {
		m, err := ChildMap()
		if err != nil {
			t.Fatal(err)
		}
		grand := 0
		for _, c := range m[root] {
			grand += len(m[c])
		}
		if len(m[root]) == 3 && grand == 1 { // the subshell has forked its sleep too
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sh has children %v and %d grandchildren, want 3 and 1", m[root], grand)
		}
		time.Sleep(5 * time.Millisecond)
	}
	f, err := Freeze(root)
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, pid := range f.Order {
		if f.Tracers[pid] == nil {
			t.Errorf("process %d has no tracer", pid)
		}
		pids = append(pids, pid)
	}
	got, err := StoppedChildren(pids)
	if err != nil {
		t.Fatal(err)
	}
	want, err := ChildMap()
	if err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if fmt.Sprint(got[pid]) != fmt.Sprint(want[pid]) {
			t.Errorf("children of %d: %v from task files, %v from the scan", pid, got[pid], want[pid])
		}
	}
	if len(pids) != 5 {
		t.Errorf("froze %v, want sh, its 3 children and a grandchild", pids)
	}
	if d, err := Descendants(root); err != nil || fmt.Sprint(d) != fmt.Sprint(pids) {
		t.Errorf("Descendants(%d) = %v (%v), want the frozen %v", root, d, err, pids)
	}
	if err := f.Release(); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if st, err := procfs.ReadStatus(pid); err != nil || st.TracerPid != 0 {
			t.Errorf("%d after release: %+v, %v", pid, st, err)
		}
	}
}

// TestFreezeTreeWrongList: FreezeTree takes its list as a guess only. A
// grandchild missing from it is frozen all the same (found under its
// frozen parent), and a listed process outside the tree (an unrelated
// one; a pid that is gone) is left running and untraced; Order is the
// tree as Descendants walks it.
func TestFreezeTreeWrongList(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (ptrace): run as root, CI does")
	}
	sh := exec.Command("sh", "-c", "sleep 1000 & (sleep 1000 & wait) & wait")
	if err := sh.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sh.Process.Kill(); _ = sh.Wait() }()
	other := exec.Command("sleep", "1000")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = other.Process.Kill(); _ = other.Wait() }()
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	root := sh.Process.Pid
	var all []int
	deadline := time.Now().Add(30 * time.Second)
	for {
		d, err := Descendants(root)
		if err != nil {
			t.Fatal(err)
		}
		if len(d) == 4 {
			all = d
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("tree of sh is %v, want 4 processes", d)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The list: root and its children, the grandchild missing, plus the
	// unrelated sleep and the gone pid.
	listed := []int{root}
	m, err := ChildMap()
	if err != nil {
		t.Fatal(err)
	}
	listed = append(listed, m[root]...)
	listed = append(listed, other.Process.Pid, gone.Process.Pid)
	var f *Frozen
	err = ptrace.Run(func() error {
		var err error
		f, err = FreezeTree(root, listed, StartTracers(2))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(f.Order) != fmt.Sprint(all) {
		t.Errorf("Order = %v, want the tree %v", f.Order, all)
	}
	for _, pid := range all {
		if st, err := procfs.ReadStatus(pid); err != nil || st.TracerPid == 0 {
			t.Errorf("%d of the tree not frozen: %+v, %v", pid, st, err)
		}
	}
	if f.Tids[other.Process.Pid] != nil || f.Tracers[other.Process.Pid] != nil {
		t.Errorf("the unrelated %d is recorded as frozen", other.Process.Pid)
	}
	if st, err := procfs.ReadStatus(other.Process.Pid); err != nil || st.TracerPid != 0 || st.State == 't' {
		t.Errorf("the unrelated %d after the freeze: %+v, %v", other.Process.Pid, st, err)
	}
	if err := f.Release(); err != nil {
		t.Fatal(err)
	}
	for _, pid := range all {
		if st, err := procfs.ReadStatus(pid); err != nil || st.TracerPid != 0 {
			t.Errorf("%d after release: %+v, %v", pid, st, err)
		}
	}
}
