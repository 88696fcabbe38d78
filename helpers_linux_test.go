package rtcr_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rtcr/rtcr"
	"github.com/rtcr/rtcr/internal/files"
	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/inspect"
	"github.com/rtcr/rtcr/internal/testutil"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) { os.Exit(testutil.Main(m)) }

// target is a test program started by a test, with stdout in a file.
type target struct {
	t       *testing.T
	cmd     *exec.Cmd
	pid     int
	out     string // stdout file
	dir     string // working directory, also holds the trigger
	trigger string
	reaped  bool // the original was reaped
	done    bool // the process with the pid is gone and reaped
}

// start runs bin with args (see testutil.StartTarget: stdout and stderr in
// a file opened O_APPEND, stdin /dev/null, no other fds).
func start(t *testing.T, bin string, args ...string) *target {
	t.Helper()
	st := testutil.StartTarget(t, bin, "", args...)
	tg := &target{t: t, cmd: st.Cmd, pid: st.Pid, out: st.Out, dir: st.Dir, trigger: filepath.Join(st.Dir, "trigger")}
	t.Cleanup(tg.kill)
	return tg
}

// kill kills whatever process now has the target's pid (the original or
// its restored copy) and reaps it.
func (tg *target) kill() {
	if tg.done {
		return
	}
	_ = unix.Kill(tg.pid, unix.SIGKILL)
	tg.reap()
}

// reap collects the original process after a dump killed it, so its pid
// is free for the restore.
func (tg *target) reap() {
	if tg.reaped {
		var ws unix.WaitStatus
		_, _ = unix.Wait4(tg.pid, &ws, 0, nil)
		return
	}
	_ = tg.cmd.Wait()
	tg.reaped = true
}

// wait waits for the restored process (our child through CLONE_PARENT) to
// exit and returns its exit status.
func (tg *target) wait(timeout time.Duration) int {
	tg.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(tg.pid, &ws, unix.WNOHANG, nil)
		if err != nil {
			tg.t.Fatalf("wait for restored %d: %v", tg.pid, err)
		}
		if pid == tg.pid && ws.Exited() {
			tg.done = true
			return ws.ExitStatus()
		}
		if pid == tg.pid && ws.Signaled() {
			tg.done = true
			tg.t.Fatalf("restored %d killed by %v; output:\n%s", tg.pid, ws.Signal(), tg.output())
		}
		time.Sleep(5 * time.Millisecond)
	}
	tg.t.Fatalf("restored %d did not exit within %v; output:\n%s", tg.pid, timeout, tg.output())
	return -1
}

// waitOriginal waits for the original process to exit and returns its
// exit status.
func (tg *target) waitOriginal() int {
	tg.t.Helper()
	_ = tg.cmd.Wait()
	tg.reaped, tg.done = true, true
	return tg.cmd.ProcessState.ExitCode()
}

func (tg *target) output() string {
	b, _ := os.ReadFile(tg.out)
	return string(b)
}

func (tg *target) fire() {
	if err := os.WriteFile(tg.trigger, nil, 0o644); err != nil {
		tg.t.Fatal(err)
	}
}

// dump checkpoints the target into a fresh directory and, unless
// leaveRunning, reaps the killed original.
func (tg *target) dump(leaveRunning bool) string {
	tg.t.Helper()
	dir := filepath.Join(tg.t.TempDir(), "img")
	st, err := rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: tg.pid, Dir: dir, LeaveRunning: leaveRunning})
	if err != nil {
		tg.t.Fatalf("dump: %v", err)
	}
	tg.t.Logf("dump of %d: %d KiB, frozen %v", tg.pid, st.PageBytes>>10, st.Freeze)
	// Every image a test makes also goes through the reader and printer.
	c, err := image.ReadManifest(dir)
	if err != nil {
		tg.t.Fatalf("read back the image: %v", err)
	}
	if err := inspect.Write(io.Discard, dir, c); err != nil {
		tg.t.Fatalf("inspect the image: %v", err)
	}
	if !leaveRunning {
		tg.reap()
	}
	return dir
}

func (tg *target) restore(dir string) {
	tg.t.Helper()
	st, err := rtcr.Restore(rtcr.RestoreOptions{Dir: dir})
	if err != nil {
		tg.t.Fatalf("restore: %v", err)
	}
	if st.Pid != tg.pid {
		tg.t.Fatalf("restored pid %d, want %d", st.Pid, tg.pid)
	}
	if tp := tracerPid(tg.pid); tp != 0 {
		tg.t.Errorf("restored process %d is still traced by %d", tg.pid, tp)
	}
}

// tracerPid returns the TracerPid of pid, -1 if it cannot be read.
func tracerPid(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "TracerPid:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return -1
}

// state returns the one-letter state of pid from /proc/PID/stat.
func state(pid int) byte {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 || i+2 >= len(b) {
		return 0
	}
	return b[i+2]
}

// checkConsecutive checks lines are n, n+1, n+2 … and returns the first.
func checkConsecutive(t *testing.T, lines []string) int {
	t.Helper()
	first := -1
	for i, l := range lines {
		v, err := strconv.Atoi(l)
		if err != nil {
			t.Fatalf("line %d: %q is not a number", i, l)
		}
		if i == 0 {
			first = v
		} else if v != first+i {
			t.Fatalf("line %d is %d, want %d (a gap or a restart)", i, v, first+i)
		}
	}
	return first
}

// assertRunning checks the target runs untraced and keeps counting.
func assertRunning(t *testing.T, tg *target) {
	t.Helper()
	if tp := tracerPid(tg.pid); tp != 0 {
		t.Fatalf("target %d left traced by %d", tg.pid, tp)
	}
	n := len(testutil.WaitForLines(t, tg.out, 1, 5*time.Second))
	testutil.WaitForLines(t, tg.out, n+5, 5*time.Second)
	if s := state(tg.pid); s == 't' || s == 'T' || s == 'Z' || s == 0 {
		t.Fatalf("target %d in state %q after a failed dump", tg.pid, s)
	}
}

// pidFree reports whether no process has pid.
func pidFree(pid int) bool {
	err := unix.Kill(pid, 0)
	return errors.Is(err, syscall.ESRCH)
}

func syscallKill(pid int) error { return unix.Kill(pid, unix.SIGKILL) }

// roundTripOK dumps tg (killing it), restores it, fires its trigger and
// requires the program, which checks its own state after the restore, to
// exit 0 having written "OK". what names the state for the message.
func (tg *target) roundTripOK(what string) {
	tg.t.Helper()
	dir := tg.dump(false)
	tg.restore(dir)
	tg.fire()
	if code := tg.wait(10 * time.Second); code != 0 || !strings.Contains(tg.output(), "OK\n") {
		tg.t.Fatalf("%s after restore: exit %d, output:\n%s", what, code, tg.output())
	}
}

// dumpRefused requires a dump of tg to fail with files.ErrUnsupported and
// an error naming each of want.
func (tg *target) dumpRefused(want ...string) {
	tg.t.Helper()
	_, err := rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: tg.pid, Dir: tg.t.TempDir()})
	ok := errors.Is(err, files.ErrUnsupported)
	for _, w := range want {
		ok = ok && strings.Contains(err.Error(), w)
	}
	if !ok {
		tg.t.Fatalf("error %v, want ErrUnsupported naming %q", err, want)
	}
}

// runsOnOK fires the trigger of a target whose dump was refused and
// requires the original, untouched by the dump, to exit 0 having written
// "OK".
func (tg *target) runsOnOK() {
	tg.t.Helper()
	tg.fire()
	if code := tg.waitOriginal(); code != 0 || !strings.Contains(tg.output(), "OK\n") {
		tg.t.Fatalf("after the refused dump: exit %d, output:\n%s", code, tg.output())
	}
}
