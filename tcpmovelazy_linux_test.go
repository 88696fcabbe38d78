package rtcr_test

import (
	"bytes"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rtcr/rtcr"
	"github.com/rtcr/rtcr/internal/testutil"
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

// TestMigrateTCPLazyDestinationLost: a post-copy whose destination
// vanishes once its copy ran and took lines from the client (its link to
// c goes down, then rtcr serve is killed: the copy dies without a packet
// reaching the client). The source runs source-resumed (S and c's route
// come back to b) and runs on; its copy of the connection is older than
// the client's (the lines the copy acknowledged never reached it), so
// rtcr aborts it before the source runs: the client's next line gets a
// reset from b instead of hanging until its TCP gives up. The listener
// survives: a new client is served by the source.
func TestMigrateTCPLazyDestinationLost(t *testing.T) {
	testutil.RequireRoot(t)
	w := newTCPWorld(t, false)
	// The page phase lasts seconds: time to act while the copy runs.
	w.throttle(w.b, "100kbit")
	log := filepath.Join(t.TempDir(), "actions.log")
	back := fmt.Sprintf("ip -n %s addr replace %s%s dev lo\nip -n %s route replace %s%s via %s", w.b, w.svc, w.host, w.c, w.svc, w.host, w.b1)
	leave := fmt.Sprintf("ip -n %s addr del %s%s dev lo", w.b, w.svc, w.host)
	arrive := fmt.Sprintf("ip -n %s addr add %s%s dev lo\nip -n %s route replace %s%s via %s", w.a, w.svc, w.host, w.c, w.svc, w.host, w.a2)
	srcScript := actionScript(t, "source.sh", log, fmt.Sprintf("case \"$RTCR_ACTION\" in\n%s)\n%s\n;;\n*)\n%s\n;;\nesac", rtcr.ActionSourceResumed, back, leave))
	dstScript := actionScript(t, "dest.sh", log, arrive)
	token := writeToken(t, t.TempDir())
	srv := startServe(t, w.netPair, filepath.Join(t.TempDir(), "images"), token, "--action-script", dstScript)
	run := startEchoServer(t, w)
	e := dialEcho(t, w)
	if err := e.send(20, 2*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	e.wait(t, "before the migration")

	cmd := w.command(w.b, testutil.BuildRtcr(t), "migrate", "--lazy", "--pid", strconv.Itoa(run.Process.Pid),
		"--to", w.addrA+":"+servePort, "--token-file", token, "--action-script", srcScript)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	testutil.WaitForFile(t, srv.log, "restored lazily", 60*time.Second)
	// The copy runs (its sockets out of repair mode): these lines reach
	// it and its kernel acknowledges them; the source never sees them.
	if err := e.send(5, 2*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	ac := strings.Replace(w.vethA, "rva", "rac", 1)
	if o, err := exec.Command("ip", "-n", w.a, "link", "set", ac, "down").CombinedOutput(); err != nil {
		t.Fatalf("ip link set %s down: %v: %s", ac, err, o)
	}
	_ = srv.cmd.Process.Kill()
	<-srv.done
	code := exitCode(t, cmd.Wait())
	t.Logf("rtcr migrate --lazy:\n%s", out.String())
	if code != 1 || !strings.Contains(out.String(), "the source runs on") {
		t.Fatalf("rtcr migrate --lazy after the destination vanished: exit %d, want 1 saying the source runs on", code)
	}
	if strings.Contains(out.String(), "every page moved") {
		t.Skipf("every page moved before the destination went: nothing to test")
	}
	actions := readFile(log)
	for _, want := range []string{rtcr.ActionSourceFrozen, rtcr.ActionPreResume, rtcr.ActionSourceResumed} {
		if !strings.Contains(actions, want) {
			t.Errorf("actions log %q lacks %s", actions, want)
		}
	}
	// The client's next line reaches b, whose socket is gone: a reset.
	start := time.Now()
	_ = e.send(1, 0)
	err := e.waitErr(60 * time.Second)
	if err == nil || strings.Contains(err.Error(), "echoed after") {
		t.Fatalf("the client's connection after the failed post-copy: %v, want it ended (reset)", err)
	}
	t.Logf("the client's connection ended %v after its next line: %v", time.Since(start).Round(time.Millisecond), err)
	if run.ProcessState != nil {
		t.Errorf("the source's rtcr run ended: %v", run.ProcessState)
	}
	e2 := dialEcho(t, w)
	if err := e2.send(10, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	e2.wait(t, "a new client after the failed post-copy")
	if tables := nftTables(t, w.b); len(tables) != 0 {
		t.Errorf("the source keeps network locks %v", tables)
	}
}
