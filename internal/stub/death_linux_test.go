package stub

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// writeStub writes the stub ELF for parent into dir and returns its path.
func writeStub(t *testing.T, dir string, parent int) string {
	t.Helper()
	img, _ := ELF(0x200000000, parent)
	path := filepath.Join(dir, "rtcr-stub")
	if err := os.WriteFile(path, img, 0o700); err != nil {
		t.Fatal(err)
	}
	return path
}

// waitExit waits, through a pidfd, until process pid has exited, and
// fails the test if it has not within timeout.
func waitExit(t *testing.T, pidfd int, pid int, timeout time.Duration) {
	t.Helper()
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	deadline := time.Now().Add(timeout)
	for {
		n, err := unix.Poll(fds, 100)
		if err == nil && n == 1 {
			return
		}
		if err != nil && err != unix.EINTR {
			t.Fatalf("poll pidfd of %d: %v", pid, err)
		}
		if time.Now().After(deadline) {
			sc, _ := os.ReadFile(fmt.Sprintf("/proc/%d/syscall", pid))
			t.Fatalf("stub %d still runs after %v (syscall %s)", pid, timeout, strings.TrimSpace(string(sc)))
		}
	}
}

// TestStubExitsUnderAnotherParent: a stub whose parent is not the one it
// was made for (rtcr died before the stub's first instruction and the stub
// was reparented) exits at once instead of pausing forever.
func TestStubExitsUnderAnotherParent(t *testing.T) {
	// Made for pid 1; its parent is this test.
	cmd := exec.Command(writeStub(t, t.TempDir(), 1))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if cmd.ProcessState.ExitCode() != 1 {
			t.Fatalf("stub under another parent: %v, want exit status 1", err)
		}
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("stub under another parent did not exit")
	}
}

// TestStubDiesWithParent: a stub whose parent dies (here a shell, killed
// with SIGKILL) dies too: it set PR_SET_PDEATHSIG to SIGKILL.
func TestStubDiesWithParent(t *testing.T) {
	dir := t.TempDir()
	stubPath := filepath.Join(dir, "rtcr-stub")
	// The shell waits for the stub file (written once its pid is known),
	// starts it in the background, prints its pid and stays the parent.
	sh := exec.Command("sh", "-c", `while [ ! -x "$1" ]; do sleep 0.01; done; "$1" & echo $!; exec sleep 1000`, "sh", stubPath)
	out, err := sh.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sh.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sh.Process.Kill(); _ = sh.Wait() }()
	tmp := writeStub(t, t.TempDir(), sh.Process.Pid)
	if err := os.Rename(tmp, stubPath); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("read the stub's pid: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("stub pid %q: %v", line, err)
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		t.Fatalf("pidfd of stub %d: %v", pid, err)
	}
	defer unix.Close(pidfd)
	defer unix.PidfdSendSignal(pidfd, unix.SIGKILL, nil, 0)
	// It passed its parent check and waits in pause() (syscall 34).
	deadline := time.Now().Add(10 * time.Second)
	for {
		sc, _ := os.ReadFile(fmt.Sprintf("/proc/%d/syscall", pid))
		if strings.HasPrefix(string(sc), "34 ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stub %d under its own parent is not in pause(): syscall %q", pid, sc)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := sh.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	waitExit(t, pidfd, pid, 10*time.Second)
}
