package rtcr_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/rtcr/rtcr"
	"github.com/rtcr/rtcr/internal/attr"
	"github.com/rtcr/rtcr/internal/testutil"
)

// attrRoundTrip starts testdata/threadattrs in mode, whose main thread and
// helper thread set their part of the state, dumps it (killing it),
// restores it and has both threads check, from inside, that they have it
// again.
func attrRoundTrip(t *testing.T, mode string) {
	t.Helper()
	testutil.RequireRoot(t)
	bin := testutil.BuildC(t, "threadattrs", false)
	tg := start(t, bin, "trigger", mode)
	testutil.WaitForFile(t, tg.out, "ready\n", 30*time.Second)
	tg.roundTripOK(mode)
}

// TestAffinityRoundTrip: each thread's CPU affinity (sched_setaffinity)
// comes back: the main thread on CPU 1 only, the helper on CPU 0 only.
func TestAffinityRoundTrip(t *testing.T) {
	if runtime.NumCPU() < 2 {
		t.Skip("needs 2 CPUs")
	}
	attrRoundTrip(t, "affinity")
}

// TestIOPrioRoundTrip: each thread's I/O priority (ioprio_set) comes back:
// best effort level 6 in the main thread, the idle class in the helper.
func TestIOPrioRoundTrip(t *testing.T) { attrRoundTrip(t, "ioprio") }

// TestTimerSlackRoundTrip: each thread's timer slack (PR_SET_TIMERSLACK)
// comes back.
func TestTimerSlackRoundTrip(t *testing.T) { attrRoundTrip(t, "timerslack") }

// TestMemPolicyRoundTrip: each thread's NUMA memory policy
// (set_mempolicy) comes back with its mode flags and nodes.
func TestMemPolicyRoundTrip(t *testing.T) { attrRoundTrip(t, "mempolicy") }

// TestCoredumpFilterRoundTrip: /proc/PID/coredump_filter comes back.
func TestCoredumpFilterRoundTrip(t *testing.T) { attrRoundTrip(t, "coredump") }

// TestLoginUIDRoundTrip: the audit login uid (the process wrote
// /proc/self/loginuid; rtcr's is another) comes back in both threads.
func TestLoginUIDRoundTrip(t *testing.T) {
	if _, err := os.Stat("/proc/self/loginuid"); err != nil {
		t.Skip("kernel without audit")
	}
	attrRoundTrip(t, "loginuid")
}

// TestTSCRoundTrip: a thread whose rdtsc faults (PR_SET_TSC) keeps it;
// the other thread does not get it.
func TestTSCRoundTrip(t *testing.T) { attrRoundTrip(t, "tsc") }

// TestMCEKillRoundTrip: each thread's machine-check kill policy
// (PR_MCE_KILL: early in one, late in the other) comes back.
func TestMCEKillRoundTrip(t *testing.T) { attrRoundTrip(t, "mce") }

// TestMDWERoundTrip: memory-deny-write-execute (PR_SET_MDWE) comes back,
// set once the memory is in place: mprotect cannot add PROT_EXEC.
func TestMDWERoundTrip(t *testing.T) { attrRoundTrip(t, "mdwe") }

// TestKSMMergeAnyRoundTrip: PR_SET_MEMORY_MERGE comes back.
func TestKSMMergeAnyRoundTrip(t *testing.T) {
	if _, err := os.Stat("/proc/self/ksm_stat"); err != nil {
		t.Skip("kernel without KSM")
	}
	attrRoundTrip(t, "ksm")
}

// TestThreadCredsRoundTrip: a thread that changed its own effective uid
// and gid with the raw system calls (the leader's stay root) gets its own
// credentials back, not the leader's.
func TestThreadCredsRoundTrip(t *testing.T) { attrRoundTrip(t, "creds") }

// TestSharedFSRefused: a thread with filesystem information of its own
// (unshare(CLONE_FS)) and processes sharing theirs (clone(CLONE_FS)) are
// refused by the dump, naming the thread or both processes, and the
// target runs on; so is a thread with syscall user dispatch on.
func TestSharedFSRefused(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildC(t, "threadattrs", false)
	for _, tc := range []struct{ mode, want string }{
		{"unsharefs", "has filesystem information (cwd, root, umask) of its own"},
		{"clonefs", "share their filesystem information"},
		{"sud", "has syscall user dispatch on"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			tg := start(t, bin, "trigger", tc.mode)
			testutil.WaitForFile(t, tg.out, "ready\n", 30*time.Second)
			_, err := rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: tg.pid, Dir: t.TempDir()})
			if !errors.Is(err, attr.ErrUnsupported) || !strings.Contains(err.Error(), tc.want) ||
				!strings.Contains(err.Error(), fmt.Sprint(tg.pid)) {
				t.Fatalf("dump error %v, want %v naming %q and %d", err, attr.ErrUnsupported, tc.want, tg.pid)
			}
			tg.runsOnOK()
		})
	}
}

// TestCgroupRoundTrip: a process in a cgroup v2 other than rtcr's comes
// back in it (the restore moves it there before its memory); one whose
// cgroup is gone at the restore is not restored, and the error names the
// cgroup.
func TestCgroupRoundTrip(t *testing.T) {
	testutil.RequireRoot(t)
	root := cgroup2Root(t)
	bin := testutil.BuildC(t, "threadattrs", false)
	for _, gone := range []bool{false, true} {
		t.Run(fmt.Sprintf("gone=%v", gone), func(t *testing.T) {
			name := fmt.Sprintf("rtcr-test-%d", os.Getpid())
			dir := filepath.Join(root, name)
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { removeCgroup(t, dir) })
			tg := start(t, bin, "trigger", "plain")
			testutil.WaitForFile(t, tg.out, "ready\n", 30*time.Second)
			if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(fmt.Sprint(tg.pid)), 0); err != nil {
				t.Fatal(err)
			}
			want := "0::/" + name + "\n"
			if !strings.Contains(readAll(t, fmt.Sprintf("/proc/%d/cgroup", tg.pid)), want) {
				t.Fatalf("target not moved into %s", dir)
			}
			img := tg.dump(false)
			if gone {
				removeCgroup(t, dir)
				_, err := rtcr.Restore(rtcr.RestoreOptions{Dir: img})
				if err == nil || !strings.Contains(err.Error(), "cgroup 0::/"+name) {
					t.Fatalf("restore error %v, want one naming cgroup 0::/%s", err, name)
				}
				tg.done = true
				return
			}
			tg.restore(img)
			if got := readAll(t, fmt.Sprintf("/proc/%d/cgroup", tg.pid)); !strings.Contains(got, want) {
				t.Fatalf("restored process in cgroups\n%s\nwant %q", got, want)
			}
			tg.fire()
			if code := tg.wait(30 * time.Second); code != 0 {
				t.Fatalf("restored target exited %d; output:\n%s", code, tg.output())
			}
		})
	}
}

// cgroup2Root returns where the cgroup v2 hierarchy is mounted, skipping
// the test without one.
func cgroup2Root(t *testing.T) string {
	data := readAll(t, "/proc/self/mountinfo")
	for _, line := range strings.Split(data, "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		f := strings.Fields(pre)
		if ok && strings.HasPrefix(post, "cgroup2 ") && len(f) >= 5 && f[3] == "/" {
			return f[4]
		}
	}
	t.Skip("no cgroup v2 mount")
	return ""
}

// removeCgroup removes the cgroup dir once its processes are gone.
func removeCgroup(t *testing.T, dir string) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := os.Remove(dir)
		if err == nil || errors.Is(err, os.ErrNotExist) {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("remove cgroup %s: %v", dir, err)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func readAll(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
