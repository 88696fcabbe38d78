package rtcr_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rtcr/rtcr"
	"github.com/rtcr/rtcr/internal/testutil"
	"golang.org/x/sys/unix"
)

// openPty returns the master of a new pseudo-terminal and its slave.
func openPty(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(); s.Close() })
	return m, s
}

// ptyOutput collects what is written to a terminal, read from its master.
type ptyOutput struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (o *ptyOutput) read(m *os.File) {
	b := make([]byte, 4096)
	for {
		n, err := m.Read(b)
		o.mu.Lock()
		o.buf.Write(b[:n])
		o.mu.Unlock()
		if err != nil {
			return
		}
	}
}

func (o *ptyOutput) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

func (o *ptyOutput) waitFor(t *testing.T, s string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if strings.Contains(o.String(), s) {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("terminal did not show %q within %v; it shows %q", s, timeout, o.String())
}

// TestControllingTerminal checkpoints a session leader whose controlling
// terminal is its stdin/stdout/stderr, kills it, and restores it with
// `rtcr restore` run on that terminal: it leads its session again, with
// the terminal as controlling terminal and itself in the foreground.
func TestControllingTerminal(t *testing.T) {
	testutil.RequireRoot(t)
	master, slave := openPty(t)
	out := &ptyOutput{}
	go out.read(master)
	dir := t.TempDir()
	cmd := exec.Command(testutil.BuildC(t, "ctty", false), filepath.Join(dir, "trigger"))
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() { _ = unix.Kill(pid, unix.SIGKILL) })
	out.waitFor(t, "ready", 10*time.Second)
	img := filepath.Join(dir, "img")
	if _, err := rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: pid, Dir: img}); err != nil {
		t.Fatalf("dump: %v", err)
	}
	_ = cmd.Wait()
	restore := exec.Command(testutil.BuildRtcr(t), "restore", "--dir", img)
	restore.Stdin, restore.Stdout, restore.Stderr = slave, slave, slave
	if err := restore.Run(); err != nil {
		t.Fatalf("rtcr restore on the terminal: %v; terminal shows %q", err, out.String())
	}
	out.waitFor(t, fmt.Sprintf("restored pid %d", pid), 10*time.Second)
	if err := os.WriteFile(filepath.Join(dir, "trigger"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	out.waitFor(t, "OK", 10*time.Second)
}
