package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rtcr/rtcr/internal/procfs"
	"github.com/rtcr/rtcr/internal/ptrace"
)

func TestFreePid(t *testing.T) {
	pid := FreePid(t)
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
		t.Fatalf("FreePid returned %d, which exists", pid)
	}
	max, err := pidMax()
	if err != nil {
		t.Fatal(err)
	}
	if pid >= max || pid < 300 {
		t.Fatalf("FreePid returned %d, want in [300, %d)", pid, max)
	}
}

// tracerOf returns the TracerPid of pid (0 when untraced).
func tracerOf(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "TracerPid:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	t.Fatalf("no TracerPid in /proc/%d/status", pid)
	return 0
}

// TestFrozenAndInStub: inside Frozen the target is traced and has the
// scratch area mapped; afterwards it runs untraced without it. Inside
// InStub the stub exists; afterwards it is gone.
func TestFrozenAndInStub(t *testing.T) {
	RequireRoot(t)
	tg := StartTarget(t, BuildC(t, "counter", false), "0\n")
	var scratch uint64
	Frozen(t, tg.Pid, func(r *ptrace.Remote, tids []int) {
		scratch = r.Scratch
		if len(tids) != 1 || tids[0] != tg.Pid || r.Pid != tg.Pid {
			t.Errorf("tids %v, remote pid %d; want [%d]", tids, r.Pid, tg.Pid)
		}
		if !mapped(t, tg.Pid, r.Scratch) {
			t.Errorf("scratch area %#x not mapped in the frozen target", r.Scratch)
		}
	})
	if tp := tracerOf(t, tg.Pid); tp != 0 {
		t.Errorf("target still traced by %d after Frozen", tp)
	}
	if mapped(t, tg.Pid, scratch) {
		t.Errorf("scratch area %#x still mapped after Frozen", scratch)
	}
	n := len(WaitForLines(t, tg.Out, 1, 5*time.Second))
	WaitForLines(t, tg.Out, n+3, 5*time.Second) // it runs on

	// fn closing the remote itself is allowed.
	Frozen(t, tg.Pid, func(r *ptrace.Remote, _ []int) {
		if err := r.CloseRemote(); err != nil {
			t.Error(err)
		}
	})
	if tp := tracerOf(t, tg.Pid); tp != 0 {
		t.Errorf("target still traced by %d after Frozen", tp)
	}

	var stubPid int
	InStub(t, func(r *ptrace.Remote) {
		stubPid = r.Pid
		if r.Scratch != StubScratch {
			t.Errorf("stub scratch at %#x, want %#x", r.Scratch, uint64(StubScratch))
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", r.Pid)); err != nil {
			t.Errorf("stub: %v", err)
		}
	})
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", stubPid)); err == nil {
		t.Errorf("stub %d still exists after InStub", stubPid)
	}
}

func mapped(t *testing.T, pid int, addr uint64) bool {
	t.Helper()
	maps, err := procfs.ReadMaps(pid)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range maps {
		if m.Start <= addr && addr < m.End {
			return true
		}
	}
	return false
}

// TestFatalInsideFrozen runs TestHelperFatalInside in a child test process:
// t.Fatal inside Frozen must fail that test (not hang it) and still release
// the target.
func TestFatalInsideFrozen(t *testing.T) {
	RequireRoot(t)
	tg := StartTarget(t, BuildC(t, "counter", false), "0\n")
	for _, where := range []string{"frozen", "stub"} {
		t.Run(where, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestHelperFatalInside$", "-test.v", "-test.timeout=60s")
			cmd.Env = append(os.Environ(), "RTCR_HELPER_PID="+strconv.Itoa(tg.Pid), "RTCR_HELPER_WHERE="+where)
			out, err := cmd.CombinedOutput()
			if err == nil || !strings.Contains(string(out), "fatal inside") || !strings.Contains(string(out), "--- FAIL: TestHelperFatalInside") {
				t.Fatalf("child test: %v, want a failure with \"fatal inside\"; output:\n%s", err, out)
			}
			if strings.Contains(string(out), "after the helper") {
				t.Errorf("the test went on after the helper; output:\n%s", out)
			}
			if tp := tracerOf(t, tg.Pid); tp != 0 {
				t.Errorf("target still traced by %d", tp)
			}
		})
	}
	n := len(WaitForLines(t, tg.Out, 1, 5*time.Second))
	WaitForLines(t, tg.Out, n+3, 5*time.Second)
}

// TestHelperFatalInside is the child of TestFatalInsideFrozen.
func TestHelperFatalInside(t *testing.T) {
	pid, _ := strconv.Atoi(os.Getenv("RTCR_HELPER_PID"))
	if pid == 0 {
		t.Skip("only run by TestFatalInsideFrozen")
	}
	if os.Getenv("RTCR_HELPER_WHERE") == "stub" {
		InStub(t, func(r *ptrace.Remote) { t.Fatal("fatal inside InStub") })
	} else {
		Frozen(t, pid, func(r *ptrace.Remote, _ []int) { t.Fatal("fatal inside Frozen") })
	}
	t.Log("after the helper")
}
