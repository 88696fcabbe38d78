package rtcr_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rtcr/rtcr"
	"github.com/rtcr/rtcr/internal/testutil"
)

// TestPtyPair checkpoints testdata/ptypair.c, a pty master in the parent
// and its slave the controlling terminal and fds 0-2 of a child session
// leader that echoes lines, with output of the child buffered unread in
// the pair, a window size and termios set (and, with "unread", two lines
// of input the child has not read yet, in canonical mode, which the dump
// used to refuse (zdtm pty00); with "rawunread" the same in non-canonical
// mode);
// kills the tree and restores it while another pty is open (the new pair
// may get another number): the buffered output comes first, then the
// echo of the unread input, the child still echoes through the new pair,
// leads its session with the slave as controlling terminal in the
// foreground, and the window size and termios are as before.
func TestPtyPair(t *testing.T) {
	testutil.RequireRoot(t)
	for _, args := range [][]string{{"trigger"}, {"trigger", "unread"}, {"trigger", "rawunread"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			tg := start(t, testutil.BuildC(t, "ptypair", false), args...)
			testutil.WaitForFile(t, tg.out, "ready\n", 10*time.Second)
			dir := tg.dump(false)
			openPty(t)
			tg.restore(dir)
			tg.fire()
			if code := tg.wait(10 * time.Second); code != 0 || !strings.Contains(tg.output(), "OK\n") {
				t.Fatalf("pty pair after restore: exit %d, output:\n%s", code, tg.output())
			}
			t.Logf("output:\n%s", tg.output())
		})
	}
}

// TestPtyPairLeaveRunning: a dump that leaves the tree running (here
// --leave-running; a failed dump alike) puts back the output and the
// unread input it read from the pair: the parent still reads the output
// first, then the echo of the input, then the echo of what it sends.
func TestPtyPairLeaveRunning(t *testing.T) {
	testutil.RequireRoot(t)
	for _, args := range [][]string{{"trigger"}, {"trigger", "unread"}, {"trigger", "rawunread"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			tg := start(t, testutil.BuildC(t, "ptypair", false), args...)
			testutil.WaitForFile(t, tg.out, "ready\n", 10*time.Second)
			tg.dump(true)
			tg.runsOnOK()
		})
	}
}

// TestPtyRefused: a dump of a tree holding the slave of a pty whose
// master is outside the tree (at fd 3), the master of one whose slave is
// open outside the tree, or a pty pair in canonical mode with a partial
// line of input the slave side has not read yet, is refused naming the fd and why, and the
// tree runs on; its buffered output was put back in the pair.
func TestPtyRefused(t *testing.T) {
	testutil.RequireRoot(t)
	for _, tc := range []struct {
		name   string
		master bool // pass the master (else the slave) as fd 3
		want   string
	}{
		{"master outside", false, "whose master is outside the tree"},
		{"slave outside", true, "no process of the tree holds its slave, which is open outside the tree"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, s := openPty(t)
			pass, link := s, "fd 3 (/dev/pts/"
			if tc.master {
				pass, link = m, "fd 3 (/dev/ptmx)"
			}
			dir := t.TempDir()
			out, err := os.Create(filepath.Join(dir, "out"))
			if err != nil {
				t.Fatal(err)
			}
			defer out.Close()
			cmd := exec.Command(testutil.BuildC(t, "counter", false))
			cmd.Stdout, cmd.ExtraFiles = out, []*os.File{pass}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			tg := &target{t: t, cmd: cmd, pid: cmd.Process.Pid, out: out.Name(), dir: dir}
			t.Cleanup(tg.kill)
			testutil.WaitForLines(t, tg.out, 2, 10*time.Second)
			tg.dumpRefused(link, tc.want)
			assertRunning(t, tg)
		})
	}
	t.Run("partial line", func(t *testing.T) {
		tg := start(t, testutil.BuildC(t, "ptypair", false), "trigger", "partial")
		testutil.WaitForFile(t, tg.out, "ready\n", 10*time.Second)
		tg.dumpRefused("fd 3 (/dev/ptmx)", "a partial line of 4 bytes")
		tg.runsOnOK()
	})
}

// scriptLines returns the numbers of the "line N" lines in a typescript.
func scriptLines(path string) []int {
	b, _ := os.ReadFile(path)
	var out []int
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && f[0] == "line" {
			if n, err := strconv.Atoi(f[1]); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

// TestScriptRestored checkpoints util-linux `script` running a shell loop
// that prints a counter and its terminal (no pipe: a command substitution
// caught with its writer exited is a pipe whose write end is closed):
// script holds the pty master, the shell leads a session on the slave.
// After dump, kill and restore the loop goes on through the new pair where
// it stopped, without a gap.
func TestScriptRestored(t *testing.T) {
	testutil.RequireRoot(t)
	script, err := exec.LookPath("script")
	if err != nil {
		t.Skip("script (util-linux) is not installed")
	}
	tg := start(t, script, "-q", "-f", "-c", "i=0; while :; do echo line $i; tty; i=$((i+1)); sleep 0.05; done", "typescript")
	ts := filepath.Join(tg.dir, "typescript")
	waitLines := func(n int) []int {
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if l := scriptLines(ts); len(l) >= n {
				return l
			}
			time.Sleep(10 * time.Millisecond)
		}
		b, _ := os.ReadFile(ts)
		t.Fatalf("typescript has fewer than %d lines:\n%s", n, b)
		return nil
	}
	waitLines(3)
	dir := tg.dump(false)
	before := len(scriptLines(ts))
	tg.restore(dir)
	lines := waitLines(before + 5)
	for i, n := range lines {
		if n != i {
			b, _ := os.ReadFile(ts)
			t.Fatalf("line %d of the typescript is number %d (a gap or a restart):\n%s", i, n, b)
		}
	}
}

// TestFdStateRun runs the self-checking round trips of pty pairs, epoll
// watches of closed fds and file locks in an `rtcr run` tree (a new pid
// namespace): the pairs, the watched files and the locks are found and
// given back across the stubs by their pids in the namespace.
func TestFdStateRun(t *testing.T) {
	testutil.RequireRoot(t)
	for _, prog := range []string{"ptypair", "epollheld", "locks"} {
		t.Run(prog, func(t *testing.T) {
			tg := start(t, testutil.BuildRtcr(t), "run", "--", testutil.BuildC(t, prog, false), "trigger")
			testutil.WaitForFile(t, tg.out, "ready\n", 10*time.Second)
			dir := t.TempDir() + "/img"
			if _, err := rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: tg.pid, Dir: dir}); err != nil {
				t.Fatalf("dump: %v", err)
			}
			tg.waitOriginal()
			st, err := rtcr.Restore(rtcr.RestoreOptions{Dir: dir})
			if err != nil {
				t.Fatalf("restore: %v", err)
			}
			tg.pid, tg.done = st.Pid, false // the restored init is our child now
			tg.fire()
			if code := tg.wait(10 * time.Second); code != 0 || !strings.Contains(tg.output(), "OK\n") {
				t.Fatalf("%s after restore in a pid namespace: exit %d, output:\n%s", prog, code, tg.output())
			}
		})
	}
}
