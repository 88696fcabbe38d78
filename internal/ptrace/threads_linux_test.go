package ptrace_test

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rtcr/rtcr/internal/mem"
	"github.com/rtcr/rtcr/internal/procfs"
	"github.com/rtcr/rtcr/internal/ptrace"
	"github.com/rtcr/rtcr/internal/testutil"
	"golang.org/x/sys/unix"
)

// TestRunThreads runs a batch in each other thread of a live victim of
// 8 threads with RunThreads: with a slot for every thread (all at once),
// with 3 slots (groups of 3), without slots and call by call (one thread
// after the other). Every thread gets its own results, and the victim runs
// on unharmed (its mask, sleeps and memory checked by itself).
func TestRunThreads(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildC(t, "victim", false)
	for _, c := range []struct {
		name       string
		slots      int
		sequential bool
		batched    int  // batches as one round trip, of 7
		rlimit     bool // RLIMIT_AS leaves no room for the slots
	}{
		{"all", 7, false, 7, false},
		{"groups", 3, false, 7, false},
		{"noslots", 0, false, 7, false},
		{"sequential", 7, true, 0, false},
		{"rlimit", 7, false, 7, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			tg := testutil.StartTarget(t, bin, "tick ", "1", "8")
			err := ptrace.Run(func() error {
				tids, err := ptrace.Freeze(tg.Pid)
				if err != nil {
					return err
				}
				defer ptrace.Release(tids)
				if len(tids) != 8 {
					return fmt.Errorf("victim has threads %v, want 8", tids)
				}
				addr, err := mem.SyscallAddr(tg.Pid)
				if err != nil {
					return err
				}
				want := c.slots
				if c.rlimit {
					// Room for the plain scratch area only.
					if err := limitAS(tg.Pid, ptrace.ScratchSize+64<<10); err != nil {
						return err
					}
					want = 0
				}
				r, err := ptrace.OpenLiveThreads(tg.Pid, addr, c.slots)
				if err != nil {
					return err
				}
				if c.sequential {
					r.Sequential()
				}
				if r.ThreadSlots() != want {
					t.Errorf("%d thread slots, want %d", r.ThreadSlots(), want)
				}
				var checks []func()
				var seen []int
				err = r.RunThreads(tids[1:], func(in *ptrace.Injector, b *ptrace.Batch) (func() error, error) {
					seen = append(seen, in.Tid)
					checks = append(checks, batchCalls(t, r, b, tg.Pid, in.Tid))
					return func() error { return nil }, nil
				})
				if err != nil {
					return errors.Join(err, r.CloseRemote())
				}
				if fmt.Sprint(seen) != fmt.Sprint(tids[1:]) {
					t.Errorf("threads injected into: %v, want %v", seen, tids[1:])
				}
				for _, check := range checks {
					check()
				}
				if r.Batched() != c.batched {
					t.Errorf("%d batches ran as one round trip, want %d", r.Batched(), c.batched)
				}
				if pid, err := r.Syscall(unix.SYS_GETPID); err != nil || int(pid) != tg.Pid {
					t.Errorf("getpid in the leader after the threads: %d, %v", pid, err)
				}
				return r.CloseRemote()
			})
			if err != nil {
				t.Fatal(err)
			}
			waitTicks(t, tg.Out, 2)
			if out := readOut(t, tg.Out); strings.Contains(out, "CORRUPT") || strings.Contains(out, "MASK") || strings.Contains(out, "SLEEP") {
				t.Fatalf("victim failed after the threads' batches:\n%s", out)
			}
		})
	}
}

// TestAbandonedThreads leaves RunThreads where a killed rtcr would: the
// first thread stopped at the end of its batch, the others in theirs
// (each in a 100 ms sleep) or stopped, every one with its frame in its
// own slot. The tracer thread ends without releasing anything; the victim
// must run on unharmed, untraced.
func TestAbandonedThreads(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildC(t, "victim", false)
	tg := testutil.StartTarget(t, bin, "tick ", "1", "6")
	err := ptrace.Run(func() error {
		tids, err := ptrace.Freeze(tg.Pid)
		if err != nil {
			return err
		}
		r, err := mem.OpenLiveThreads(tg.Pid, len(tids)-1)
		if err != nil {
			_ = ptrace.Release(tids)
			return err
		}
		ptrace.SetBatchHook(func(at string) bool { return at == "stopped" })
		defer ptrace.SetBatchHook(nil)
		err = r.RunThreads(tids[1:], func(in *ptrace.Injector, b *ptrace.Batch) (func() error, error) {
			var ts [16]byte
			ts[8], ts[9], ts[10], ts[11] = 0x00, 0xe1, 0xf5, 0x05 // 100,000,000 ns
			tsAddr, _ := b.Put(ts[:])
			b.Add(unix.SYS_GETTID)
			b.Add(unix.SYS_NANOSLEEP, tsAddr, 0)
			return func() error { return nil }, nil
		})
		if err == nil {
			return fmt.Errorf("RunThreads was not abandoned")
		}
		return nil // abandon: nothing released
	})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := procfs.ReadStatus(tg.Pid)
		if err != nil {
			t.Fatal(err)
		}
		if st.TracerPid == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("victim still traced by %d", st.TracerPid)
		}
		time.Sleep(10 * time.Millisecond)
	}
	waitTicks(t, tg.Out, 2)
	if out := readOut(t, tg.Out); strings.Contains(out, "CORRUPT") || strings.Contains(out, "MASK") || strings.Contains(out, "SLEEP") {
		t.Fatalf("victim failed after abandoned thread batches:\n%s", out)
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", tg.Pid)); err == nil && !strings.Contains(string(b), "State:\tS") && !strings.Contains(string(b), "State:\tR") {
		t.Fatalf("victim not running after abandoned thread batches:\n%s", b)
	}
}

// waitTicks waits until the victim writing to out has printed n more
// ticks (with many threads a tick is printed once all of them moved on,
// so their numbers skip).
func waitTicks(t *testing.T, out string, n int) {
	t.Helper()
	want := strings.Count(readOut(t, out), "tick") + n
	deadline := time.Now().Add(30 * time.Second)
	for strings.Count(readOut(t, out), "tick") < want {
		if time.Now().After(deadline) {
			t.Fatalf("victim did not tick %d more times in 30 s:\n%s", n, readOut(t, out))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// limitAS sets the address-space limit of pid to what it maps now plus
// room bytes.
func limitAS(pid, room int) error {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return err
	}
	var kb int
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmSize:"); ok {
			fmt.Sscan(v, &kb)
		}
	}
	if kb == 0 {
		return fmt.Errorf("no VmSize in /proc/%d/status", pid)
	}
	lim := unix.Rlimit{Cur: uint64(kb<<10 + room), Max: uint64(kb<<10 + room)}
	return unix.Prlimit(pid, unix.RLIMIT_AS, &lim, nil)
}

// TestLiveThreadsWindowRlimit: a process where the scratch area is mapped
// through the unprotected window (no sigreturn gadget, a stack pointer
// outside [stack]) and whose RLIMIT_AS leaves no room for the thread
// slots still gets the plain scratch area (no slots: its threads one after
// the other), as OpenLive gives it, instead of failing the dump.
func TestLiveThreadsWindowRlimit(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildC(t, "nogadget", false)
	for _, args := range [][]string{nil, {"heapstack"}} {
		t.Run(fmt.Sprint(args), func(t *testing.T) {
			tg := testutil.StartTarget(t, bin, "tick 64\n", args...)
			err := ptrace.Run(func() error {
				tids, err := ptrace.Freeze(tg.Pid)
				if err != nil {
					return err
				}
				defer ptrace.Release(tids)
				addr, err := mem.SyscallAddr(tg.Pid)
				if err != nil {
					return err
				}
				if err := limitAS(tg.Pid, ptrace.ScratchSize+64<<10); err != nil {
					return err
				}
				r, err := ptrace.OpenLiveThreads(tg.Pid, addr, 7)
				if err != nil {
					return fmt.Errorf("OpenLiveThreads under RLIMIT_AS: %w", err)
				}
				if r.ThreadSlots() != 0 {
					t.Errorf("%d thread slots, want 0", r.ThreadSlots())
				}
				if pid, err := r.Syscall(unix.SYS_GETPID); err != nil || int(pid) != tg.Pid {
					t.Errorf("getpid in the target: %d, %v", pid, err)
				}
				return r.CloseRemote()
			})
			if err != nil {
				t.Fatal(err)
			}
			n := strings.Count(readOut(t, tg.Out), "tick")
			testutil.WaitForFile(t, tg.Out, fmt.Sprintf("tick %d\n", 64*(n+2)), 30*time.Second)
		})
	}
}
