package ptrace_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rtcr/rtcr/internal/mem"
	"github.com/rtcr/rtcr/internal/ptrace"
	"github.com/rtcr/rtcr/internal/testutil"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) { os.Exit(testutil.Main(m)) }

// TestAbandonedLiveInjection leaves a live injection half done, as a
// killed rtcr does (its tracees are detached wherever they stand), and
// checks that the target runs on with every register intact: the avx
// program verifies its vector, x87 and MXCSR registers and its raw
// nanosleep loop; any stray trap or lost register fails it.
func TestAbandonedLiveInjection(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildC(t, "avx", false)
	for _, tc := range []struct {
		name string
		// at runs inside the frozen target and returns the injector rtcr
		// is "killed" in the middle of.
		at func(t *testing.T, r *ptrace.Remote) error
	}{
		{"armed with the frame in the scratch area", func(t *testing.T, r *ptrace.Remote) error {
			_, err := r.Syscall(unix.SYS_GETPID)
			return err
		}},
		{"after a failed call", func(t *testing.T, r *ptrace.Remote) error {
			if _, err := r.Syscall(unix.SYS_CLOSE, 1<<20); err != unix.EBADF {
				t.Errorf("close(1<<20) in the target: %v, want EBADF", err)
			}
			return nil
		}},
		{"frame moved back to the stack", func(t *testing.T, r *ptrace.Remote) error {
			regs := r.Saved()
			if err := r.MoveFrame((regs.Rsp-128-32<<10)&^63, true); err != nil {
				return err
			}
			_, err := r.Syscall(unix.SYS_GETPID) // the switch happens here
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tg := testutil.StartTarget(t, bin, "ready\n", "trigger")
			if b, _ := os.ReadFile(tg.Out); strings.Contains(string(b), "SKIP") {
				t.Skip(string(b))
			}
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
				if r.WindowCalls != 0 {
					t.Errorf("OpenLive used %d unprotected calls, want 0", r.WindowCalls)
				}
				err = tc.at(t, r)
				// Abandon: detach as a dying tracer does, registers as they are.
				_ = ptrace.Release(tids)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(tg.Dir, "trigger"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- tg.Cmd.Wait() }()
			select {
			case err := <-done:
				out, _ := os.ReadFile(tg.Out)
				if err != nil || !strings.Contains(string(out), "OK\n") {
					t.Fatalf("target after an abandoned injection: %v; output:\n%s", err, out)
				}
			case <-time.After(30 * time.Second):
				out, _ := os.ReadFile(tg.Out)
				t.Fatalf("target did not finish within 30 s after the trigger; output:\n%s", out)
			}
		})
	}
}

// TestFindSigreturnGadget finds the gadget in this (Go) test binary, once
// by reading its code and once from the cache, at the same place, and
// checks the bytes there.
func TestFindSigreturnGadget(t *testing.T) {
	pid := os.Getpid()
	g1, ok, err := ptrace.FindSigreturnGadget(pid)
	if err != nil || !ok {
		t.Fatalf("FindSigreturnGadget(self): %v, %v", ok, err)
	}
	g2, ok, err := ptrace.FindSigreturnGadget(pid)
	if err != nil || !ok || g2 != g1 {
		t.Fatalf("second search: %+v, %v, %v; want %+v", g2, ok, err, g1)
	}
	code := make([]byte, g1.End-g1.Addr)
	if err := ptrace.ReadMem(pid, g1.Addr, code); err != nil {
		t.Fatal(err)
	}
	if code[len(code)-2] != 0x0f || code[len(code)-1] != 0x05 || !bytes.Contains(code, []byte{0x0f, 0, 0, 0}) {
		t.Fatalf("bytes at the gadget %#x: % x, want mov $15 then syscall", g1.Addr, code)
	}
}

// TestLiveFallbacks covers the cases OpenLive cannot make safe from the
// first call on: a process without a sigreturn gadget (rtcr writes one
// into the scratch area) and a leader whose stack pointer is not in
// [stack]. Each uses exactly one unprotected call to map the scratch area
// and one to unmap it; in between the process is as safe as any other:
// abandoned there, it runs on.
func TestLiveFallbacks(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildC(t, "nogadget", false)
	for _, args := range [][]string{nil, {"heapstack"}} {
		for _, abandon := range []bool{false, true} {
			name := fmt.Sprintf("args=%v/abandon=%v", args, abandon)
			t.Run(name, func(t *testing.T) {
				tg := testutil.StartTarget(t, bin, "tick 64\n", args...)
				var scratch uint64
				err := ptrace.Run(func() error {
					tids, err := ptrace.Freeze(tg.Pid)
					if err != nil {
						return err
					}
					defer ptrace.Release(tids)
					if _, ok, err := ptrace.FindSigreturnGadget(tg.Pid); err != nil || ok {
						return fmt.Errorf("nogadget has a sigreturn gadget (%v, %v)", ok, err)
					}
					r, err := mem.OpenLive(tg.Pid)
					if err != nil {
						return err
					}
					scratch = r.Scratch
					if r.WindowCalls != 1 {
						t.Errorf("OpenLive: %d unprotected calls, want 1", r.WindowCalls)
					}
					if pid, err := r.Syscall(unix.SYS_GETPID); err != nil || int(pid) != tg.Pid {
						t.Errorf("getpid in the target: %d, %v", pid, err)
					}
					if abandon {
						return nil
					}
					if err := r.CloseRemote(); err != nil {
						return err
					}
					if r.WindowCalls != 2 {
						t.Errorf("after CloseRemote: %d unprotected calls, want 2", r.WindowCalls)
					}
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				if !abandon {
					if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/maps", tg.Pid)); strings.Contains(string(b), fmt.Sprintf("%x-", scratch)) {
						t.Errorf("the scratch area at %#x is still mapped:\n%s", scratch, b)
					}
				}
				n := strings.Count(readOut(t, tg.Out), "tick")
				testutil.WaitForFile(t, tg.Out, fmt.Sprintf("tick %d\n", 64*(n+2)), 20*time.Second)
				if out := readOut(t, tg.Out); strings.Contains(out, "FAIL") {
					t.Fatalf("target failed after the injection:\n%s", out)
				}
			})
		}
	}
}

func readOut(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestAbandonedSleepRestarts abandons a live injection into a thread
// frozen in nanosleep: the sleep must go on (made again), not end early
// with EINTR, which the victim program reports as a failure.
func TestAbandonedSleepRestarts(t *testing.T) {
	testutil.RequireRoot(t)
	tg := testutil.StartTarget(t, testutil.BuildC(t, "victim", false), "tick 64\n", "1")
	for round := 0; round < 5; round++ {
		err := ptrace.Run(func() error {
			tids, err := ptrace.Freeze(tg.Pid)
			if err != nil {
				return err
			}
			defer ptrace.Release(tids) // abandon: as a killed rtcr
			r, err := mem.OpenLive(tg.Pid)
			if err != nil {
				return err
			}
			_, err = r.Syscall(unix.SYS_GETPID)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		n := strings.Count(readOut(t, tg.Out), "tick")
		testutil.WaitForFile(t, tg.Out, fmt.Sprintf("tick %d\n", 64*(n+1)), 20*time.Second)
	}
	if out := readOut(t, tg.Out); strings.Contains(out, "SLEEP") {
		t.Fatalf("a sleep was cut short after an abandoned injection:\n%s", out)
	}
}

// TestXSaveEnd: CPUID's layout of the state components: x87/SSE and the
// header end at 576, AVX's upper halves at 832 (offsets of later
// components differ between CPUs: no fixed numbers), each feature added
// never ends earlier, and everything stays within the frame's limit.
func TestXSaveEnd(t *testing.T) {
	sup := ptrace.SupportedXFeatures()
	if got := ptrace.XSaveEnd(3); got != 576 {
		t.Errorf("xsaveEnd(x87|SSE) = %d, want 576", got)
	}
	if sup&4 != 0 {
		if got := ptrace.XSaveEnd(7); got != 832 {
			t.Errorf("xsaveEnd(x87|SSE|AVX) = %d, want 832", got)
		}
	}
	prev := 0
	for f := uint64(3); f <= sup; f = f<<1 | 1 {
		got := ptrace.XSaveEnd(f & sup)
		if got < prev || got > 12<<10 {
			t.Errorf("xsaveEnd(%#x) = %d after %d", f&sup, got, prev)
		}
		prev = got
	}
}
