package rtcr_test

import (
	"bufio"
	"net"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rtcr/rtcr/internal/testutil"
	"golang.org/x/sys/unix"
)

// TestKilledDumpLockLapses SIGKILLs `rtcr dump` of a TCP server while its
// network lock is in place (stopped right after it logged the lock, then
// killed): the server runs on untraced, and its clients' connections,
// blocked by the lock, go on without a reset once the lock's lease
// (netlock.Lease) has run out, though nobody deleted the table.
func TestKilledDumpLockLapses(t *testing.T) {
	testutil.RequireRoot(t)
	requireNft(t)
	rtcrBin := testutil.BuildRtcr(t)
	// 256 MiB to copy: the dump runs long enough after its lock to be
	// stopped under it.
	t.Setenv("TCPSERVER_BALLAST_MB", "256")
	tg := start(t, testutil.BuildC(t, "tcpserver", false), "trigger", "tcp4")
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(serverPort(t, tg)))
	ss, stop := startStreams(t, addr, 4, 1)
	testutil.WaitForFile(t, tg.out, "ready\n", 10*time.Second)
	waitBatches(t, ss, 20, 30*time.Second)
	before := rtcrTables(t)
	t.Cleanup(func() {
		for _, name := range rtcrTables(t) {
			if !slices.Contains(before, name) {
				exec.Command("nft", "delete", "table", "inet", name).Run()
			}
		}
	})
	// The rest of the dump takes a few milliseconds: if it ended before
	// the stop, try again.
	killed := false
	for try := 0; try < 5 && !killed; try++ {
		killed = killDumpUnderLock(t, rtcrBin, tg.pid, t.TempDir(), before)
	}
	if !killed {
		t.Fatal("5 dumps ended before they could be stopped under their network lock")
	}
	deadline := time.Now().Add(30 * time.Second)
	for tracerPid(tg.pid) != 0 || state(tg.pid) == 't' || state(tg.pid) == 'T' {
		if time.Now().After(deadline) {
			t.Fatalf("server %d still traced by %d or stopped (state %q) 30 s after rtcr was killed", tg.pid, tracerPid(tg.pid), state(tg.pid))
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Lease (10 s) and the clients' retransmission backoff after it.
	waitBatches(t, ss, 20, 120*time.Second)
	tg.fire()
	testutil.WaitForFile(t, tg.out, "OK\n", 10*time.Second)
	stop()
	for _, s := range ss {
		s.c.Close()
	}
	if code := tg.waitOriginal(); code != 0 {
		t.Fatalf("server exit %d, output:\n%s", code, tg.output())
	}
}

// killDumpUnderLock runs `rtcr dump -R -v` of pid, stops it as soon as it
// logged its network lock, and, if a new lock table is in place then,
// SIGKILLs it and returns true; else (the dump ended first) it lets it
// end and returns false.
func killDumpUnderLock(t *testing.T, rtcrBin string, pid int, dir string, before []string) bool {
	t.Helper()
	cmd := exec.Command(rtcrBin, "dump", "--pid", strconv.Itoa(pid), "--dir", dir, "-R", "-v")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stderr)
	locked := false
	for sc.Scan() {
		if strings.Contains(sc.Text(), "network lock") {
			unix.Kill(cmd.Process.Pid, unix.SIGSTOP)
			locked = true
			break
		}
	}
	if !locked {
		cmd.Wait()
		t.Fatalf("rtcr dump logged no network lock")
	}
	tables := rtcrTables(t)
	if len(tables) <= len(before) {
		unix.Kill(cmd.Process.Pid, unix.SIGCONT)
		go func() { // drain the log so the dump can end
			for sc.Scan() {
			}
		}()
		cmd.Wait()
		return false
	}
	cmd.Process.Kill()
	cmd.Wait()
	return true
}
