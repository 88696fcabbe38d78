package ptrace_test

import (
	"bytes"
	"encoding/binary"
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

// batchCalls queues calls whose results are known, in r's process and
// thread tid: getpid, gettid, PR_GET_NAME, a close that fails with EBADF,
// the action of SIGUSR1 (the victim catches it) and access of a path that
// exists and of one that does not.
// check verifies the results once the batch ran.
func batchCalls(t *testing.T, r *ptrace.Remote, b *ptrace.Batch, pid, tid int) (check func()) {
	iPid := b.Add(unix.SYS_GETPID)
	iTid := b.Add(unix.SYS_GETTID)
	nameAddr, nameOff := b.Out(16)
	iName := b.Add(unix.SYS_PRCTL, unix.PR_GET_NAME, nameAddr)
	iClose := b.Add(unix.SYS_CLOSE, 1<<20)
	saAddr, saOff := b.Out(32)
	iSa := b.Add(unix.SYS_RT_SIGACTION, uint64(unix.SIGUSR1), 0, saAddr, 8)
	// Not a sleep: it would overwrite the restart block of a thread
	// frozen in one (which no call of the dump does).
	rootAddr, _ := b.Put([]byte("/\x00"))
	iRoot := b.Add(unix.SYS_ACCESS, rootAddr, unix.F_OK)
	noneAddr, _ := b.Put([]byte("/nonexistent-rtcr-batch\x00"))
	iNone := b.Add(unix.SYS_ACCESS, noneAddr, unix.F_OK)
	return func() {
		t.Helper()
		if v, err := b.Result(iPid); err != nil || int(v) != pid {
			t.Errorf("getpid in the batch: %d, %v; want %d", v, err, pid)
		}
		if v, err := b.Result(iTid); err != nil || int(v) != tid {
			t.Errorf("gettid in the batch: %d, %v; want %d", v, err, tid)
		}
		comm, err := procfs.ReadComm(pid, tid)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.Result(iName); err != nil {
			t.Errorf("PR_GET_NAME in the batch: %v", err)
		} else if name := string(bytes.TrimRight(b.Bytes(nameOff, 16), "\x00")); name != comm {
			t.Errorf("PR_GET_NAME in the batch: %q, want %q", name, comm)
		}
		if _, err := b.Result(iClose); err != unix.EBADF {
			t.Errorf("close(1<<20) in the batch: %v, want EBADF", err)
		}
		if _, err := b.Result(iSa); err != nil {
			t.Errorf("rt_sigaction in the batch: %v", err)
		} else if h := binary.LittleEndian.Uint64(b.Bytes(saOff, 8)); h <= 1 {
			t.Errorf("SIGUSR1's handler read in the batch: %#x, want the victim's", h)
		}
		if _, err := b.Result(iRoot); err != nil {
			t.Errorf("access(\"/\") in the batch: %v", err)
		}
		if _, err := b.Result(iNone); err != unix.ENOENT {
			t.Errorf("access of a missing path in the batch: %v, want ENOENT", err)
		}
	}
}

// TestBatchRoundTrip runs batches in both threads of a live victim, as
// one round trip and, forced, call by call: the same results, the calls
// injected one by one afterwards still work, and the victim runs on
// unharmed (its mask, sleeps and memory checked by itself).
func TestBatchRoundTrip(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildC(t, "victim", false)
	for _, sequential := range []bool{false, true} {
		t.Run(fmt.Sprintf("sequential=%v", sequential), func(t *testing.T) {
			tg := testutil.StartTarget(t, bin, "tick 64\n", "1", "2")
			err := ptrace.Run(func() error {
				tids, err := ptrace.Freeze(tg.Pid)
				if err != nil {
					return err
				}
				defer ptrace.Release(tids)
				if len(tids) != 2 {
					return fmt.Errorf("victim has threads %v, want 2", tids)
				}
				r, err := mem.OpenLive(tg.Pid)
				if err != nil {
					return err
				}
				if sequential {
					r.Sequential()
				}
				for round := 0; round < 2; round++ {
					b := r.NewBatch()
					check := batchCalls(t, r, b, tg.Pid, tg.Pid)
					if err := r.RunBatch(r.Injector, b); err != nil {
						return err
					}
					check()
					if pid, err := r.Syscall(unix.SYS_GETPID); err != nil || int(pid) != tg.Pid {
						t.Errorf("getpid after a batch: %d, %v", pid, err)
					}
				}
				in, err := r.ThreadInjector(tids[1])
				if err != nil {
					return err
				}
				b := r.NewBatch()
				check := batchCalls(t, r, b, tg.Pid, tids[1])
				if err := r.RunBatch(in, b); err != nil {
					return err
				}
				check()
				if err := in.Restore(); err != nil {
					return err
				}
				want := 3
				if sequential {
					want = 0
				}
				if r.Batched() != want {
					t.Errorf("%d batches ran as one round trip, want %d", r.Batched(), want)
				}
				return r.CloseRemote()
			})
			if err != nil {
				t.Fatal(err)
			}
			n := strings.Count(readOut(t, tg.Out), "tick")
			testutil.WaitForFile(t, tg.Out, fmt.Sprintf("tick %d\n", 64*(n+2)), 20*time.Second)
			if out := readOut(t, tg.Out); strings.Contains(out, "CORRUPT") || strings.Contains(out, "MASK") || strings.Contains(out, "SLEEP") {
				t.Fatalf("victim failed after the batches:\n%s", out)
			}
		})
	}
}

// TestAbandonedBatch leaves a batch half done, as a killed rtcr does (its
// tracer thread ends and the kernel detaches the tracees where they
// stand): while the thread runs the batch (in a 200 ms sleep of it), at
// the signal stop that ends it, and after it with the thread re-armed at
// its gadget. The victim must run on unharmed: not traced, not stopped,
// its sleep not cut short, its mask as it was, no signal in its way.
func TestAbandonedBatch(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildC(t, "victim", false)
	for _, stage := range []string{"running", "stopped", "after"} {
		t.Run(stage, func(t *testing.T) {
			tg := testutil.StartTarget(t, bin, "tick 64\n", "1")
			err := ptrace.Run(func() error {
				tids, err := ptrace.Freeze(tg.Pid)
				if err != nil {
					return err
				}
				r, err := mem.OpenLive(tg.Pid)
				if err != nil {
					_ = ptrace.Release(tids)
					return err
				}
				b := r.NewBatch()
				var ts [16]byte
				binary.LittleEndian.PutUint64(ts[8:], uint64(200*time.Millisecond))
				tsAddr, _ := b.Put(ts[:])
				b.Add(unix.SYS_GETPID)
				b.Add(unix.SYS_NANOSLEEP, tsAddr, 0)
				b.Add(unix.SYS_GETTID)
				if stage != "after" {
					ptrace.SetBatchHook(func(at string) bool { return at == stage })
					defer ptrace.SetBatchHook(nil)
				}
				err = r.RunBatch(r.Injector, b)
				if stage == "after" && err != nil {
					return err
				}
				if r.Batched() == 0 && stage == "after" {
					return fmt.Errorf("the batch ran call by call")
				}
				// Abandon: the tracer thread ends here without
				// releasing anything.
				return nil
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
					b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", st.TracerPid))
					t.Fatalf("victim still traced by %d:\n%s", st.TracerPid, b)
				}
				time.Sleep(10 * time.Millisecond)
			}
			n := strings.Count(readOut(t, tg.Out), "tick")
			testutil.WaitForFile(t, tg.Out, fmt.Sprintf("tick %d\n", 64*(n+2)), 30*time.Second)
			if out := readOut(t, tg.Out); strings.Contains(out, "CORRUPT") || strings.Contains(out, "MASK") || strings.Contains(out, "SLEEP") {
				t.Fatalf("victim failed after an abandoned batch:\n%s", out)
			}
			if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", tg.Pid)); err == nil && !strings.Contains(string(b), "State:\tS") && !strings.Contains(string(b), "State:\tR") {
				t.Fatalf("victim not running after an abandoned batch:\n%s", b)
			}
		})
	}
}
