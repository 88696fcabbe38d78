package task_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/rtcr/rtcr/internal/abi"
	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/mem"
	"github.com/rtcr/rtcr/internal/procfs"
	"github.com/rtcr/rtcr/internal/ptrace"
	"github.com/rtcr/rtcr/internal/task"
	"github.com/rtcr/rtcr/internal/testutil"
	"golang.org/x/sys/unix"
)

// TestRoundTrip dumps the thread of testdata/procstate.c (blocked signals,
// an alternate signal stack, a name, glibc's rseq registration and
// clear-tid address, MXCSR and xmm15 set, stopped in pause()), restores it
// into a stub with task.Restore and task.SetCPU, and reads it back: the
// kernel state with task.Dump before SetCPU (once the registers are set no
// call can be injected), the CPU state with ptrace.GetRegs, GetXState,
// GetSigMask and GetRseq after.
//
// The rseq area must be mapped in the stub: the kernel writes the cpu id
// into it on every return to user space once it is registered (each
// injected call returns to user space), and kills the thread if it cannot.
// The stub has no memory but its scratch area, so the test maps anonymous
// memory at the target's address first (the real restore has the target's
// memory there).
func TestRoundTrip(t *testing.T) {
	testutil.RequireRoot(t)
	tg := testutil.StartTarget(t, testutil.BuildC(t, "procstate", false), "ready\n", ".")

	var want image.Thread
	testutil.Frozen(t, tg.Pid, func(r *ptrace.Remote, tids []int) {
		if len(tids) != 1 || tids[0] != tg.Pid {
			t.Errorf("target threads %v, want [%d]", tids, tg.Pid)
			return
		}
		var err error
		if want, err = task.Dump(r, tids[0]); err != nil {
			t.Errorf("dump target: %v", err)
		}
	})
	if t.Failed() {
		return
	}
	checkTarget(t, &want)

	var back image.Thread
	var regs unix.PtraceRegs
	var xs []byte
	var mask uint64
	var rs abi.PtraceRseqConfiguration
	testutil.InStub(t, func(r *ptrace.Remote) {
		if want.Rseq != nil {
			start := want.Rseq.Ptr &^ (image.PageSize - 1)
			end := (want.Rseq.Ptr + uint64(want.Rseq.Len) + image.PageSize - 1) &^ (image.PageSize - 1)
			if _, err := r.Syscall(unix.SYS_MMAP, start, end-start, unix.PROT_READ|unix.PROT_WRITE,
				unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_FIXED_NOREPLACE, ^uint64(0), 0); err != nil {
				t.Errorf("map the rseq area %#x-%#x in the stub: %v", start, end, err)
				return
			}
		}
		if err := task.Restore(r.Injector, r, &want); err != nil {
			t.Errorf("restore: %v", err)
			return
		}
		var err error
		if back, err = task.Dump(r, r.Tid); err != nil {
			t.Errorf("dump stub: %v", err)
			return
		}
		if err := task.SetCPU(r.Tid, &want); err != nil {
			t.Errorf("set cpu: %v", err)
			return
		}
		if regs, err = ptrace.GetRegs(r.Tid); err != nil {
			t.Error(err)
		}
		if xs, err = ptrace.GetXState(r.Tid); err != nil {
			t.Error(err)
		}
		if mask, err = ptrace.GetSigMask(r.Tid); err != nil {
			t.Error(err)
		}
		if rs, err = ptrace.GetRseq(r.Tid); err != nil {
			t.Error(err)
		}
	})
	if t.Failed() {
		return
	}

	// Kernel state, read back by task.Dump.
	if back.TidAddress != want.TidAddress {
		t.Errorf("clear-tid address %#x, want %#x", back.TidAddress, want.TidAddress)
	}
	if back.AltStack != want.AltStack {
		t.Errorf("sigaltstack %+v, want %+v", back.AltStack, want.AltStack)
	}
	if back.Name != want.Name {
		t.Errorf("name %q, want %q", back.Name, want.Name)
	}
	if !reflect.DeepEqual(back.Rseq, want.Rseq) {
		t.Errorf("rseq (task.Dump) %+v, want %+v", back.Rseq, want.Rseq)
	}

	// CPU state, read back with ptrace after SetCPU.
	if regs != want.Regs {
		t.Errorf("registers differ:%s", diffRegs(regs, want.Regs))
	}
	if !bytes.Equal(xs, want.XState) {
		t.Errorf("xstate differs:%s", diffBytes(xs, want.XState))
	}
	if mask != want.SigMask {
		t.Errorf("signal mask %#x, want %#x", mask, want.SigMask)
	}
	var wantRseq abi.PtraceRseqConfiguration
	if want.Rseq != nil {
		wantRseq = abi.PtraceRseqConfiguration{RseqAbiPointer: want.Rseq.Ptr, RseqAbiSize: want.Rseq.Len, Signature: want.Rseq.Sig}
	}
	if rs != wantRseq {
		t.Errorf("rseq (ptrace) %+v, want %+v", rs, wantRseq)
	}
}

// checkTarget makes sure the dump saw what procstate.c set up.
func checkTarget(t *testing.T, th *image.Thread) {
	t.Helper()
	const sigrtmin = 34 // glibc's
	wantMask := uint64(1)<<(unix.SIGUSR2-1) | uint64(1)<<(sigrtmin+3-1)
	if th.SigMask != wantMask {
		t.Errorf("target signal mask %#x, want %#x", th.SigMask, wantMask)
	}
	if th.Name != "rt-kind" {
		t.Errorf("target name %q, want rt-kind", th.Name)
	}
	if th.AltStack.Size != 64<<10 || th.AltStack.Sp == 0 || th.AltStack.Flags != 0 {
		t.Errorf("target sigaltstack %+v, want 64 KiB, enabled", th.AltStack)
	}
	if th.TidAddress == 0 {
		t.Errorf("target has no clear-tid address (glibc sets one)")
	}
	if th.Rseq == nil {
		t.Logf("target has no rseq registration (glibc older than 2.35, or disabled): not round-tripped")
	}
	// MXCSR is at byte 24 of the xsave area (the fxsave legacy region).
	if len(th.XState) < 512 {
		t.Fatalf("target xstate has %d bytes", len(th.XState))
	}
	if mxcsr := binary.LittleEndian.Uint32(th.XState[24:]); mxcsr != 0x7f80 {
		t.Errorf("target MXCSR %#x, want 0x7f80 (round toward zero)", mxcsr)
	}
	// xmm15 is at byte 160 + 15*16.
	if x := binary.LittleEndian.Uint64(th.XState[160+15*16:]); x != 0x1122334455667788 {
		t.Errorf("target xmm15 low half %#x, want 0x1122334455667788", x)
	}
}

func diffRegs(got, want unix.PtraceRegs) string {
	gv, wv := reflect.ValueOf(got), reflect.ValueOf(want)
	s := ""
	for i := 0; i < gv.NumField(); i++ {
		if g, w := gv.Field(i).Uint(), wv.Field(i).Uint(); g != w {
			s += fmt.Sprintf("\n\t%s = %#x, want %#x", gv.Type().Field(i).Name, g, w)
		}
	}
	return s
}

func diffBytes(got, want []byte) string {
	if len(got) != len(want) {
		return fmt.Sprintf(" %d bytes, want %d", len(got), len(want))
	}
	s := ""
	for i := range got {
		if got[i] != want[i] {
			s += fmt.Sprintf("\n\tbyte %d = %#02x, want %#02x", i, got[i], want[i])
			if len(s) > 2000 {
				return s + "\n\t…"
			}
		}
	}
	return s
}

// TestDumpOnAltStack: a thread inside a handler on its alternate stack is
// dumped with SS_ONSTACK, although the injected sigaltstack call runs on
// rtcr's frame elsewhere.
func TestDumpOnAltStack(t *testing.T) {
	testutil.RequireRoot(t)
	tg := testutil.StartTarget(t, testutil.BuildC(t, "onaltstack", false), "in handler\n")
	testutil.Frozen(t, tg.Pid, func(r *ptrace.Remote, tids []int) {
		th, err := task.Dump(r, tids[0])
		if err != nil {
			t.Fatalf("dump: %v", err)
		}
		if th.AltStack.Size != 64<<10 || th.AltStack.Flags&abi.SS_ONSTACK == 0 {
			t.Errorf("sigaltstack %+v, want 64 KiB with SS_ONSTACK", th.AltStack)
		}
	})
}

// TestRseqAbortOnLiveInjection: a thread frozen inside an rseq critical
// section must come back at the section's abort handler, as the kernel
// sends a preempted thread there. The injected calls run it elsewhere
// (where the kernel then forgets the section), so rtcr must do it: moved to
// another CPU while frozen and put back inside the section, the program
// sees its CPU change mid-section and reports a violation. With its stack
// on the heap, the scratch area is mapped with a call made before the
// injector is armed: the abort must come before that one too.
func TestRseqAbortOnLiveInjection(t *testing.T) {
	testutil.RequireRoot(t)
	if runtime.NumCPU() < 2 {
		t.Skip("needs two CPUs")
	}
	for _, args := range [][]string{nil, {"heapstack"}} {
		t.Run(fmt.Sprintf("args=%v", args), func(t *testing.T) {
			tg := testutil.StartTarget(t, testutil.BuildC(t, "rseqcs", false), "ready\n", args...)
			for round := 0; round < 6; round++ {
				testutil.Frozen(t, tg.Pid, func(r *ptrace.Remote, tids []int) {
					var set unix.CPUSet
					set.Set(round % 2)
					if err := unix.SchedSetaffinity(tg.Pid, &set); err != nil {
						t.Fatal(err)
					}
					if _, err := task.Dump(r, tids[0]); err != nil {
						t.Fatalf("dump: %v", err)
					}
				})
				time.Sleep(20 * time.Millisecond)
				if out, _ := os.ReadFile(tg.Out); strings.Contains(string(out), "VIOLATION") {
					t.Fatalf("round %d: the thread went on inside its critical section on another CPU:\n%s", round, out)
				}
			}
		})
	}
}

// TestDumpThreads dumps the other threads of a live victim of 6 threads
// side by side (task.DumpThreads with a slot for each) and one by one
// (no slots): the same state for each thread, its name the one /proc
// shows, its registers the ones it was frozen with.
func TestDumpThreads(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildC(t, "victim", false)
	tg := testutil.StartTarget(t, bin, "tick ", "1", "6")
	err := ptrace.Run(func() error {
		tids, err := ptrace.Freeze(tg.Pid)
		if err != nil {
			return err
		}
		defer ptrace.Release(tids)
		var frozen []unix.PtraceRegs
		for _, tid := range tids[1:] {
			regs, err := ptrace.GetRegs(tid)
			if err != nil {
				return err
			}
			frozen = append(frozen, regs)
		}
		var got [2][]image.Thread
		for i, slots := range []int{len(tids) - 1, 0} {
			r, err := mem.OpenLiveThreads(tg.Pid, slots)
			if err != nil {
				return err
			}
			got[i], err = task.DumpThreads(r, tids[1:])
			if cerr := r.CloseRemote(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		}
		for i, tid := range tids[1:] {
			comm, err := procfs.ReadComm(tg.Pid, tid)
			if err != nil {
				return err
			}
			th := got[0][i]
			if th.Tid != tid || th.Name != comm || len(th.XState) == 0 {
				t.Errorf("thread %d: tid %d, name %q (want %q), %d bytes of xsave", tid, th.Tid, th.Name, comm, len(th.XState))
			}
			if !reflect.DeepEqual(th, got[1][i]) {
				t.Errorf("thread %d side by side:\n%+v\none by one:\n%+v", tid, th, got[1][i])
			}
			if regs, _ := ptrace.GetRegs(tid); regs != frozen[i] {
				t.Errorf("thread %d registers after the dump:\n%+v\nwant\n%+v", tid, regs, frozen[i])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
