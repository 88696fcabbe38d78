package rtcr_test

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/rtcr/rtcr"
)

// TestMigrateTCPLazy is TestMigrateTCP by post-copy (rtcr migrate
// --lazy): the address leaves b in source-frozen (the source frozen, its
// image not sent yet), arrives in a in pre-resume (the lazy copy held
// before its sockets leave repair mode); the connection survives, a new
// client reaches the moved listener, and neither host keeps a lock once
// every page moved.
func TestMigrateTCPLazy(t *testing.T) {
	testMigrateTCP(t, addrMoves, "--lazy")
}

// TestMigrateTCPLazyPreResumeFails: post-copy whose pre-resume moves the
// address and then fails: the copy runs all the same, rtcr serve's log
// says so, and the connection survives.
func TestMigrateTCPLazyPreResumeFails(t *testing.T) {
	testMigrateTCP(t, addrDestFails, "--lazy")
}

// TestMigrateTCPLazyFrozenFails: post-copy whose source-frozen removes
// the address and then fails. Post-copy can still stop there (nothing
// was sent, the source only frozen): rtcr migrate runs source-resumed
// (the address and c's route come back to b), the source runs on and
// rtcr migrate exits 1 naming the script; the connection survives on
// the source, nothing runs in a, no lock is left on either host.
func TestMigrateTCPLazyFrozenFails(t *testing.T) {
	testMigrateTCP(t, addrSourceFails, "--lazy")
}

// lazySourceFails checks, for testMigrateTCP, the end of a post-copy
// whose source-frozen failed: see TestMigrateTCPLazyFrozenFails.
func lazySourceFails(t *testing.T, w *tcpWorld, e *echoClient, run *exec.Cmd, log, mout string, code int) {
	t.Helper()
	if code != 1 || !strings.Contains(mout, "the source runs on") || !strings.Contains(mout, rtcr.ActionSourceFrozen) {
		t.Fatalf("rtcr migrate --lazy with a failing %s: exit %d, want 1 saying the source runs on: %s", rtcr.ActionSourceFrozen, code, mout)
	}
	t.Logf("%s", strings.TrimSpace(mout))
	e.wait(t, "the lines sent during the failed migration (echoed by the source)")
	if err := e.send(50, 2*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	e.wait(t, "after the failed migration")
	if pid := echoIn(t, w.netnsIno(w.a)); pid != 0 {
		t.Errorf("an echoserver (pid %d) runs in the destination's namespace after a failed migration", pid)
	}
	if run.ProcessState != nil {
		t.Errorf("the source's rtcr run ended: %v", run.ProcessState)
	}
	e2 := dialEcho(t, w)
	if err := e2.send(10, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	e2.wait(t, "a new client after the failed migration")
	actions := readFile(log)
	frozen, resumed := strings.Index(actions, rtcr.ActionSourceFrozen), strings.Index(actions, rtcr.ActionSourceResumed)
	if frozen < 0 || resumed < frozen || strings.Contains(actions, rtcr.ActionPreResume) {
		t.Errorf("actions log %q: want %s, then %s, and no %s", actions, rtcr.ActionSourceFrozen, rtcr.ActionSourceResumed, rtcr.ActionPreResume)
	}
	for _, ns := range []string{w.a, w.b} {
		if tables := nftTables(t, ns); len(tables) != 0 {
			t.Errorf("namespace %s keeps network locks %v after the failed migration", ns, tables)
		}
	}
}
