package testutil

// Helpers for the round-trip tests of the resource kinds (internal/sig,
// attr, files, task, mem): start a target program, freeze it with a remote
// to inject through, and create an empty stub to restore into.
//
// Import rule: this file makes testutil import internal/ptrace, stub and
// mem (and, through them, procfs, image and abi). A test that imports
// testutil therefore cannot be an internal (same-package) test of any of
// those packages — it would be an import cycle — and must be an external
// test package instead (package mem_test).
//
// The tracer rule: ptrace requests only work from the OS thread that
// attached the tracee, so Frozen and InStub run fn inside ptrace.Run, on
// the tracer thread, not on the test's goroutine. fn should report
// problems with t.Errorf and return. If fn calls t.Fatal, t.FailNow or
// t.Skip anyway (runtime.Goexit on the tracer thread, which ptrace.Run
// does not expect), the clean-up still runs (it is deferred on the tracer
// thread), and the helper then ends the test from the test's goroutine
// with FailNow (SkipNow after a Skip). The goroutine waiting inside
// ptrace.Run for the dead tracer goroutine stays blocked for the rest of
// the test binary: a small leak, only after a test already failed.

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rtcr/rtcr/internal/mem"
	"github.com/rtcr/rtcr/internal/procfs"
	"github.com/rtcr/rtcr/internal/ptrace"
	"github.com/rtcr/rtcr/internal/stub"
)

// StubScratch and StubELF are where InStub puts the stub's scratch area and
// ELF: at 4 GiB, far from where a test program maps anything.
const (
	StubScratch = 0x100000000
	StubELF     = StubScratch + ptrace.ScratchSize + 4096
)

// FreePid returns a pid that no process or thread has (no /proc/<n>),
// scanning down from /proc/sys/kernel/pid_max - 1. Another process may take
// it before the caller does: InStub retries with a lower one.
func FreePid(t testing.TB) int {
	t.Helper()
	max, err := pidMax()
	if err != nil {
		t.Fatal(err)
	}
	pid := freePidBelow(max)
	if pid < 0 {
		t.Fatalf("no free pid below %d", max)
	}
	return pid
}

func pidMax() (int, error) {
	b, err := os.ReadFile("/proc/sys/kernel/pid_max")
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("parse /proc/sys/kernel/pid_max: %w", err)
	}
	return n, nil
}

// freePidBelow returns the highest pid below limit without /proc/<n>, or
// -1. Low pids (< 300) are never returned: the kernel reserves them.
func freePidBelow(limit int) int {
	for pid := limit - 1; pid >= 300; pid-- {
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); errors.Is(err, os.ErrNotExist) {
			return pid
		}
	}
	return -1
}

// onTracer runs body inside ptrace.Run and fails the test with the error it
// returns. See the tracer rule at the top of this file for what happens
// when body, or a function it calls, ends its goroutine with t.FailNow.
func onTracer(t testing.TB, body func() error) {
	t.Helper()
	done := make(chan error, 1)
	goexit := make(chan struct{})
	go func() {
		done <- ptrace.Run(func() (err error) {
			returned := false
			defer func() {
				if p := recover(); p != nil {
					err = fmt.Errorf("panic on the tracer thread: %v\n%s", p, debug.Stack())
					return
				}
				if !returned {
					close(goexit) // runtime.Goexit: ptrace.Run never returns
				}
			}()
			err = body()
			returned = true
			return err
		})
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-goexit:
		if t.Skipped() && !t.Failed() {
			t.SkipNow()
		}
		t.Log("the tracer goroutine ended with runtime.Goexit (t.Fatal or t.Skip inside Frozen/InStub)")
		t.FailNow()
	}
}

// Frozen freezes every thread of process pid, opens a remote on it (an
// injector on the thread-group leader plus a scratch area mapped in the
// target, through the vdso's syscall instruction) and calls fn with it and
// the frozen tids, the leader first. Afterwards it closes the remote
// (unmapping the scratch area and putting back the leader's registers and
// signal mask) and releases every thread, even when fn fails.
//
// fn may call r.CloseRemote itself, as the real dump does before reading
// memory (so that the scratch area is not part of the image); Frozen then
// only puts the registers back once more. fn runs on the tracer thread:
// see the tracer rule at the top of this file.
func Frozen(t testing.TB, pid int, fn func(r *ptrace.Remote, tids []int)) {
	t.Helper()
	onTracer(t, func() (err error) {
		tids, err := ptrace.Freeze(pid)
		if err != nil {
			return err
		}
		defer func() {
			if rerr := ptrace.Release(tids); rerr != nil && err == nil {
				err = rerr
			}
		}()
		r, err := mem.OpenLive(pid)
		if err != nil {
			return err
		}
		defer func() {
			if cerr := closeRemote(r); cerr != nil && err == nil {
				err = cerr
			}
		}()
		fn(r, tids)
		return nil
	})
}

// closeRemote undoes OpenRemote, unless fn already did: then only the
// registers and mask are put back again (the same values).
func closeRemote(r *ptrace.Remote) error {
	maps, err := procfs.ReadMaps(r.Pid)
	if err != nil {
		return err
	}
	for _, m := range maps {
		if m.Start <= r.Scratch && r.Scratch < m.End {
			return r.CloseRemote()
		}
	}
	return r.Restore()
}

// InStub creates an empty stub (see stub.Start) with a free pid, its
// scratch area at StubScratch and its ELF at StubELF, calls fn with it and
// kills it afterwards, even when fn fails. When another process takes the
// chosen pid first (tests of other packages run at the same time), it tries
// the next free pid below. fn runs on the tracer thread: see the tracer
// rule at the top of this file.
func InStub(t testing.TB, fn func(r *ptrace.Remote)) {
	t.Helper()
	limit, err := pidMax()
	if err != nil {
		t.Fatal(err)
	}
	onTracer(t, func() error {
		var r *ptrace.Remote
		var err error
		for try := 0; ; try++ {
			pid := freePidBelow(limit)
			if pid < 0 {
				return fmt.Errorf("no free pid below %d", limit)
			}
			r, err = stub.Start(pid, StubScratch, StubELF)
			if err == nil {
				break
			}
			if !errors.Is(err, stub.ErrPidTaken) || try == 20 {
				return fmt.Errorf("start stub with pid %d: %w", pid, err)
			}
			limit = pid
		}
		defer ptrace.Kill(r.Pid)
		fn(r)
		return nil
	})
}

// Target is a test program started by StartTarget.
type Target struct {
	Pid int
	Dir string // its working directory, a fresh temporary directory
	Out string // the file its stdout and stderr go to (Dir/out)
	Cmd *exec.Cmd
}

// OutputFile creates dir/out for a target's stdout and stderr, opened
// write-only with O_APPEND: a file an fd dump can reopen by path. The
// caller closes f once the target has started.
func OutputFile(t testing.TB, dir string) (string, *os.File) {
	t.Helper()
	out := filepath.Join(dir, "out")
	f, err := os.OpenFile(out, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	return out, f
}

// StartTarget runs bin with args in a fresh temporary directory, with stdin
// /dev/null (read-only) and stdout and stderr a file opened write-only
// O_APPEND, and no other fd: all three are files an fd dump can reopen by
// path. It waits until the program writes ready (if ready is not "") and
// kills and reaps it when the test ends.
func StartTarget(t testing.TB, bin, ready string, args ...string) *Target {
	t.Helper()
	dir := t.TempDir()
	out, f := OutputFile(t, dir)
	defer f.Close()
	cmd := exec.Command(bin, args...)
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tg := &Target{Pid: cmd.Process.Pid, Dir: dir, Out: out, Cmd: cmd}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	if ready != "" {
		WaitForFile(t, out, ready, 10*time.Second)
	}
	return tg
}
