package rtcr_test

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rtcr/rtcr"
	"github.com/rtcr/rtcr/internal/testutil"
	"golang.org/x/sys/unix"
)

// The TCP migration tests add a third namespace to the netPair: the
// client's, c, which is also the router between the two others. It has
// a link to each: c–b (c 10.79.1.1, b 10.79.1.2), c–a (c 10.79.2.1, a
// 10.79.2.2), and each of a and b a route to the other link through c. The service address S (10.79.0.100/32, on lo) is where
// the echo server listens; c routes S to the host that has the service,
// so "the address moves" means: S leaves b (or stays, see below), S is
// added in a, and c's route to S now leads to a (the routed form of the
// gratuitous ARP a host on a shared link would send). With IPv6 the same
// plan uses fd00:79:1::/64, fd00:79:2::/64 and S = fd00:79::100/128
// (every address added without duplicate address detection).
const svcPort = "7000"

// tcpPlan is the addresses of the TCP migration tests, IPv4 or IPv6.
type tcpPlan struct {
	svc, host  string // S and its prefix ("/32", "/128")
	c1, b1     string // the c–b link: c's and b's address
	c2, a2     string // the c–a link
	net1, net2 string // the two links' subnets
	plen       string // their prefix ("/24", "/64")
	opts       []string
}

var (
	plan4 = tcpPlan{svc: "10.79.0.100", host: "/32", c1: "10.79.1.1", b1: "10.79.1.2", c2: "10.79.2.1", a2: "10.79.2.2",
		net1: "10.79.1.0/24", net2: "10.79.2.0/24", plen: "/24"}
	plan6 = tcpPlan{svc: "fd00:79::100", host: "/128", c1: "fd00:79:1::1", b1: "fd00:79:1::2", c2: "fd00:79:2::1", a2: "fd00:79:2::2",
		net1: "fd00:79:1::/64", net2: "fd00:79:2::/64", plen: "/64", opts: []string{"nodad"}}
)

// tcpWorld is a netPair plus the client/router namespace c.
type tcpWorld struct {
	*netPair
	c string
	tcpPlan
}

// svcHostPort is S:PORT as net.Dial takes it.
func (w *tcpWorld) svcHostPort() string { return net.JoinHostPort(w.svc, svcPort) }

// newTCPWorld makes the namespaces and links with the IPv4 plan; the
// source b has S, and the destination a too when bothSides.
func newTCPWorld(t *testing.T, bothSides bool) *tcpWorld {
	return newTCPWorldPlan(t, plan4, bothSides)
}

// newTCPWorldPlan is newTCPWorld with the addresses of p.
func newTCPWorldPlan(t *testing.T, p tcpPlan, bothSides bool) *tcpWorld {
	t.Helper()
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skipf("nft not found (apt-get install nftables): %v", err)
	}
	np := newNetPair(t)
	w := &tcpWorld{netPair: np, c: strings.Replace(np.a, "rtcrA", "rtcrC", 1), tcpPlan: p}
	addr := func(ns, a, dev string) []string {
		return append([]string{"-n", ns, "addr", "add", a, "dev", dev}, p.opts...)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", w.c).Run() })
	cb, bc := strings.Replace(np.vethA, "rva", "rcb", 1), strings.Replace(np.vethA, "rva", "rbc", 1)
	ca, ac := strings.Replace(np.vethA, "rva", "rca", 1), strings.Replace(np.vethA, "rva", "rac", 1)
	cmds := [][]string{
		{"netns", "add", w.c},
		{"-n", w.c, "link", "set", "lo", "up"},
		{"link", "add", cb, "type", "veth", "peer", "name", bc},
		{"link", "set", cb, "netns", w.c},
		{"link", "set", bc, "netns", np.b},
		{"link", "add", ca, "type", "veth", "peer", "name", ac},
		{"link", "set", ca, "netns", w.c},
		{"link", "set", ac, "netns", np.a},
		addr(w.c, p.c1+p.plen, cb),
		addr(np.b, p.b1+p.plen, bc),
		addr(w.c, p.c2+p.plen, ca),
		addr(np.a, p.a2+p.plen, ac),
		{"-n", w.c, "link", "set", cb, "up"},
		{"-n", w.c, "link", "set", ca, "up"},
		{"-n", np.b, "link", "set", bc, "up"},
		{"-n", np.a, "link", "set", ac, "up"},
		// The client's replies reach either host: each routes the
		// other link's subnet through c.
		{"-n", np.b, "route", "add", p.net2, "via", p.c1},
		{"-n", np.a, "route", "add", p.net1, "via", p.c2},
		addr(np.b, p.svc+p.host, "lo"),
		{"-n", w.c, "route", "add", p.svc + p.host, "via", p.b1},
	}
	if bothSides {
		cmds = append(cmds, addr(np.a, p.svc+p.host, "lo"))
	}
	for _, args := range cmds {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	// c receives S's packets on either link while its route moves.
	for _, conf := range []string{"all", "default", cb, ca} {
		if out, err := exec.Command("ip", "netns", "exec", w.c, "sysctl", "-qw", "net.ipv4.conf."+conf+".rp_filter=0").CombinedOutput(); err != nil {
			t.Fatalf("sysctl rp_filter in %s: %v: %s", w.c, err, out)
		}
	}
	return w
}

// actionScript writes an executable shell script (an action script for
// rtcr migrate or serve) that appends its action and RTCR_ADDRESSES to
// log and then runs body.
func actionScript(t *testing.T, name, log, body string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	src := fmt.Sprintf("#!/bin/sh\nset -e\necho \"$RTCR_ACTION $1 [$RTCR_ADDRESSES]\" >> %s\n%s\n", log, body)
	if err := os.WriteFile(path, []byte(src), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// nftTables lists the rtcr_ tables of namespace ns.
func nftTables(t *testing.T, ns string) []string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns, "nft", "list", "tables").CombinedOutput()
	if err != nil {
		t.Fatalf("nft list tables in %s: %v: %s", ns, err, out)
	}
	var tables []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "rtcr_") {
			tables = append(tables, strings.TrimSpace(l))
		}
	}
	return tables
}

// echoClient keeps one connection to the echo server, sending numbered
// lines and checking that the echoes come back in order, each once.
type echoClient struct {
	conn net.Conn
	mu   sync.Mutex
	sent int // lines sent
	got  int // lines echoed, in order
	err  error
}

// dialEcho connects from namespace c to S.
func dialEcho(t *testing.T, w *tcpWorld) *echoClient {
	t.Helper()
	var conn net.Conn
	if err := w.inNetns(w.c, func() error {
		var err error
		conn, err = net.DialTimeout("tcp", w.svcHostPort(), 30*time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	e := &echoClient{conn: conn}
	go e.read()
	return e
}

// read checks every echoed line against the next number expected.
func (e *echoClient) read() {
	sc := bufio.NewScanner(e.conn)
	for sc.Scan() {
		e.mu.Lock()
		want := fmt.Sprintf("%08d", e.got)
		if sc.Text() != want && e.err == nil {
			e.err = fmt.Errorf("echo %d is %q, want %q (lost, duplicated or reordered)", e.got, sc.Text(), want)
		}
		e.got++
		e.mu.Unlock()
	}
	e.mu.Lock()
	if e.err == nil {
		e.err = fmt.Errorf("the connection ended after %d echoes: %v", e.got, sc.Err())
	}
	e.mu.Unlock()
}

// send sends the next n numbered lines, one every gap.
func (e *echoClient) send(n int, gap time.Duration) error {
	for i := 0; i < n; i++ {
		e.mu.Lock()
		line := fmt.Sprintf("%08d\n", e.sent)
		e.sent++
		e.mu.Unlock()
		_ = e.conn.SetWriteDeadline(time.Now().Add(60 * time.Second))
		if _, err := e.conn.Write([]byte(line)); err != nil {
			return fmt.Errorf("client: send line %s: %w", strings.TrimSpace(line), err)
		}
		time.Sleep(gap)
	}
	return nil
}

// wait waits until every line sent was echoed, failing on an error.
func (e *echoClient) wait(t *testing.T, what string) {
	t.Helper()
	if err := e.waitErr(60 * time.Second); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// waitErr waits at most timeout until every line sent was echoed.
func (e *echoClient) waitErr(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		e.mu.Lock()
		sent, got, err := e.sent, e.got, e.err
		e.mu.Unlock()
		if err != nil {
			return err
		}
		if got == sent {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d lines sent, %d echoed after %v", sent, got, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// addrCase says where the service address is and what the action
// scripts do with it.
type addrCase int

const (
	// addrMoves: S is on the source only; source-killed removes it,
	// pre-resume adds it on the destination and moves c's route.
	addrMoves addrCase = iota
	// addrOnBoth: S is on both hosts from the start; only c's route
	// moves (pre-resume).
	addrOnBoth
	// addrStays: the user does nothing: S stays on the source, the
	// route too.
	addrStays
	// addrSourceFails: as addrMoves, but source-killed exits 3 after it
	// removed the address.
	addrSourceFails
	// addrDestFails: as addrMoves, but pre-resume exits 3 after it
	// added the address and moved the route.
	addrDestFails
)

// TestMigrateTCP moves an echo server (an `rtcr run` tree: a listener
// and one established connection) from namespace b to the rtcr serve in
// a, the service address moving with it through the action scripts: it
// leaves b at source-killed and arrives in a (with c's route) at
// pre-resume. The client in c keeps its connection: lines sent before,
// during and after the migration come back in order, none lost or
// twice; a new client reaches the moved listener; neither host keeps a
// network lock.
func TestMigrateTCP(t *testing.T) {
	testMigrateTCP(t, addrMoves)
}

// TestMigrateTCPNoPrecopy is TestMigrateTCP with the whole image in one
// freeze (rtcr migrate --no-precopy); TestMigrateTCP pre-copies.
func TestMigrateTCPNoPrecopy(t *testing.T) {
	testMigrateTCP(t, addrMoves, "--no-precopy")
}

// TestMigrateTCP6 is TestMigrateTCP over IPv6: the restore binds and
// connects the moved sockets with IPV6_TRANSPARENT.
func TestMigrateTCP6(t *testing.T) {
	testMigrateTCPPlan(t, plan6, addrMoves)
}

// TestMigrateTCPAddressOnBoth is TestMigrateTCP with S on both hosts
// from the start (an anycast or shared address): the destination binds
// it as a local address, nothing leaves b, and only c's route moves (at
// pre-resume). The source's lock goes after the move all the same.
func TestMigrateTCPAddressOnBoth(t *testing.T) {
	testMigrateTCP(t, addrOnBoth)
}

// TestMigrateTCPAddressStays: nobody moves the address. The process
// moves and runs, rtcr serve warns that S is not on its host, and the
// client's connection is reset by the source host (its lock is gone,
// its socket too) on the client's next segment.
func TestMigrateTCPAddressStays(t *testing.T) {
	testMigrateTCP(t, addrStays)
}

// TestMigrateTCPActionFails: the source-killed script moves the address
// and then fails. The source is dead, so the copy still runs (the
// connection survives); rtcr migrate exits 1 saying the process moved
// but the script failed, and keeps the source's network lock.
func TestMigrateTCPActionFails(t *testing.T) {
	testMigrateTCP(t, addrSourceFails)
}

// TestMigrateTCPPreResumeFails: the pre-resume script moves the address
// and then fails. The copy runs all the same (the source is dead),
// rtcr serve's log says so, and the connection survives; rtcr migrate
// does not hear of it (exit 0).
func TestMigrateTCPPreResumeFails(t *testing.T) {
	testMigrateTCP(t, addrDestFails)
}

// testMigrateTCP runs the echo server migration with migrateFlags added
// to rtcr migrate (a pre-copy or post-copy variant is one more caller).
func testMigrateTCP(t *testing.T, where addrCase, migrateFlags ...string) {
	testMigrateTCPPlan(t, plan4, where, migrateFlags...)
}

// testMigrateTCPPlan is testMigrateTCP with the addresses of p.
func testMigrateTCPPlan(t *testing.T, p tcpPlan, where addrCase, migrateFlags ...string) {
	testutil.RequireRoot(t)
	w := newTCPWorldPlan(t, p, where == addrOnBoth)
	log := filepath.Join(t.TempDir(), "actions.log")
	route := fmt.Sprintf("ip -n %s route replace %s%s via %s", w.c, w.svc, w.host, w.a2)
	lazy := slices.Contains(migrateFlags, "--lazy")
	leaveAction := rtcr.ActionSourceKilled
	if lazy {
		leaveAction = rtcr.ActionSourceFrozen
	}
	var leave, arrive string
	switch where {
	case addrMoves, addrSourceFails, addrDestFails:
		leave = fmt.Sprintf("ip -n %s addr del %s%s dev lo", w.b, w.svc, w.host)
		if where == addrSourceFails {
			leave += "\nexit 3"
		}
		arrive = fmt.Sprintf("ip -n %s addr add %s%s dev lo %s\n%s", w.a, w.svc, w.host, strings.Join(w.opts, " "), route)
		if where == addrDestFails {
			arrive += "\nexit 3"
		}
	case addrOnBoth:
		leave, arrive = "true # the address stays: only the route moves", route
	case addrStays:
		leave, arrive = "true", "true"
	}
	// A post-copy that fails after source-frozen brings S back to b
	// (source-resumed) before the source runs on.
	back := fmt.Sprintf("ip -n %s addr replace %s%s dev lo %s\nip -n %s route replace %s%s via %s",
		w.b, w.svc, w.host, strings.Join(w.opts, " "), w.c, w.svc, w.host, w.b1)
	leave = fmt.Sprintf("case \"$RTCR_ACTION\" in\n%s)\n%s\n;;\n*)\n%s\n;;\nesac", rtcr.ActionSourceResumed, back, leave)
	srcScript := actionScript(t, "source.sh", log, leave)
	dstScript := actionScript(t, "dest.sh", log, arrive)
	token := writeToken(t, t.TempDir())
	srv := startServe(t, w.netPair, filepath.Join(t.TempDir(), "images"), token, "--action-script", dstScript)

	run := startEchoServer(t, w)
	e := dialEcho(t, w)
	if err := e.send(50, 2*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	e.wait(t, "before the migration")

	// Lines keep going out while the migration runs: those sent while
	// the tree is frozen or moving are dropped by the locks and
	// retransmitted by the client's TCP.
	stop, done := make(chan struct{}), make(chan error, 1)
	during := 0
	go func() {
		for {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			if err := e.send(1, 5*time.Millisecond); err != nil {
				done <- err
				return
			}
			during++
		}
	}()
	args := append([]string{"--name", "echo", "--action-script", srcScript}, migrateFlags...)
	mout, code := migrate(t, w.netPair, run.Process.Pid, token, args...)
	close(stop)
	if err := <-done; err != nil && where != addrStays {
		t.Fatal(err)
	}
	var prog int
	if lazy && where == addrSourceFails {
		lazySourceFails(t, w, e, run, log, mout, code)
		return
	}
	if where == addrSourceFails {
		if code != 1 || !strings.Contains(mout, "moved (pid") || !strings.Contains(mout, "source-killed") || !strings.Contains(mout, "network lock stays") {
			t.Fatalf("rtcr migrate with a failing source-killed: exit %d: %s", code, mout)
		}
		prog = echoIn(t, w.netnsIno(w.a))
		if prog == 0 {
			t.Fatalf("no echoserver runs in the destination's namespace")
		}
	} else if code != 0 {
		t.Fatalf("rtcr migrate: exit %d: %s\nserve:\n%s", code, mout, readFile(srv.log))
	}
	t.Logf("%s", strings.TrimSpace(mout))
	if prog == 0 {
		prog = restoredInit(t, mout)
	}
	if where == addrStays {
		err := e.waitErr(60 * time.Second)
		if err == nil || !strings.Contains(err.Error(), "connection reset") {
			t.Errorf("the address stayed on the source: the client saw %v, want its connection reset", err)
		}
		testutil.WaitForFile(t, srv.log, w.svc+" of its sockets is not on this host", 30*time.Second)
		return
	}
	e.wait(t, "the lines sent during the migration")
	t.Logf("%d lines sent while rtcr migrate ran", during)
	if err := e.send(50, 2*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	e.wait(t, "after the migration")

	var st unix.Stat_t
	if err := unix.Stat(fmt.Sprintf("/proc/%d/ns/net", prog), &st); err != nil {
		t.Fatal(err)
	}
	if st.Ino != w.netnsIno(w.a) {
		t.Errorf("the restored echo server %d is not in the destination's network namespace", prog)
	}
	if err := run.Wait(); err == nil || exitCode(t, err) != 128+9 {
		t.Errorf("the source's rtcr run ended with %v, want killed (exit 137)", err)
	}
	// A new client reaches the moved listener.
	e2 := dialEcho(t, w)
	if err := e2.send(10, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	e2.wait(t, "a new client after the migration")

	actions := readFile(log)
	for _, want := range []string{leaveAction + " " + leaveAction + " [" + w.svc + "]", "pre-resume pre-resume [" + w.svc + "]"} {
		if !strings.Contains(actions, want) {
			t.Errorf("actions log %q lacks %q", actions, want)
		}
	}
	if strings.Index(actions, leaveAction) > strings.Index(actions, "pre-resume") {
		t.Errorf("actions ran in the order %q, want %s first", actions, leaveAction)
	}
	if strings.Contains(actions, rtcr.ActionSourceResumed) {
		t.Errorf("actions log %q: %s ran, but the migration succeeded", actions, rtcr.ActionSourceResumed)
	}
	if where == addrDestFails {
		testutil.WaitForFile(t, srv.log, "the copy runs anyway", 30*time.Second)
	}
	if where == addrSourceFails {
		if tables := nftTables(t, w.b); len(tables) != 1 {
			t.Errorf("the source keeps network locks %v, want its own", tables)
		}
		return
	}
	for _, ns := range []string{w.a, w.b} {
		if tables := nftTables(t, ns); len(tables) != 0 {
			t.Errorf("namespace %s keeps network locks %v after the migration", ns, tables)
		}
	}
}

// TestActionScriptChecks: an action script must be an absolute path to
// a regular executable file that only its owner (root or rtcr's user)
// can change.
func TestActionScriptChecks(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.sh")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := rtcr.CheckActionScript(path); err != nil {
		t.Errorf("a good script refused: %v", err)
	}
	for _, tc := range []struct {
		mode os.FileMode
		path string
		want string
	}{
		{0o755, "a.sh", "absolute path"},
		{0o644, path, "not executable"},
		{0o775, path, "writable by group or others"},
		{0o757, path, "writable by group or others"},
		{0o755, dir, "not a regular file"},
	} {
		if err := os.Chmod(path, tc.mode); err != nil {
			t.Fatal(err)
		}
		err := rtcr.CheckActionScript(tc.path)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s mode %o: %v, want %q", tc.path, tc.mode, err, tc.want)
		}
	}
	// A directory above it that others may write (not sticky): the
	// script could be swapped between the check and the run.
	if err := os.Chmod(path, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		mode os.FileMode
		want string
	}{
		{0o777, "writable by group or others"},
		{0o777 | os.ModeSticky, ""},
		{0o700, ""},
	} {
		if err := os.Chmod(dir, tc.mode); err != nil {
			t.Fatal(err)
		}
		err := rtcr.CheckActionScript(path)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("directory mode %v: %v, want %q", tc.mode, err, tc.want)
		}
	}
}

// echoIn returns the host pid of the echoserver whose network namespace
// has inode ino, 0 if none.
func echoIn(t *testing.T, ino uint64) int {
	t.Helper()
	for _, pid := range programsOf(testutil.BuildC(t, "echoserver", false)) {
		var st unix.Stat_t
		if unix.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &st) == nil && st.Ino == ino {
			return pid
		}
	}
	return 0
}

// startEchoServer starts `rtcr run -- echoserver S PORT` in namespace b
// and waits until it listens. The source tree, and any copy of it in
// namespace a, are killed at the end of the test.
func startEchoServer(t *testing.T, w *tcpWorld) *exec.Cmd {
	t.Helper()
	dir := t.TempDir()
	out, f := testutil.OutputFile(t, dir)
	defer f.Close()
	run := w.command(w.b, testutil.BuildRtcr(t), "run", "--", testutil.BuildC(t, "echoserver", false), w.svc, svcPort)
	run.Dir, run.Stdout, run.Stderr = dir, f, f
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = run.Process.Kill(); _ = run.Wait() })
	testutil.WaitForFile(t, out, "ready", 60*time.Second)
	init := nsInit(t, run.Process.Pid)
	t.Cleanup(func() { _ = unix.Kill(init, unix.SIGKILL) })
	// Whatever happens, no copy outlives the test (the destination's
	// is serve's child, in a pid namespace of its own).
	destIno := w.netnsIno(w.a)
	t.Cleanup(func() {
		if pid := echoIn(t, destIno); pid != 0 {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
	})
	return run
}

// TestActionScriptRun: a script gets its action as $1 and in
// RTCR_ACTION, with the variables given, and its output is passed on; a
// non-zero exit is an error naming the script; a script still running
// at the timeout is killed with its whole process group (a child it
// started in the background too) and the run fails saying so.
func TestActionScriptRun(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return path
	}
	var out strings.Builder
	ok := write("ok.sh", `echo "$1 $RTCR_ACTION $RTCR_ADDRESSES"`)
	if err := rtcr.RunActionForTest(ok, "pre-resume", []string{"RTCR_ADDRESSES=192.0.2.1"}, &out, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); got != "pre-resume pre-resume 192.0.2.1\n" {
		t.Errorf("script printed %q", got)
	}
	fails := write("fails.sh", "exit 3")
	if err := rtcr.RunActionForTest(fails, "source-killed", nil, nil, 30*time.Second); err == nil || !strings.Contains(err.Error(), "fails.sh source-killed") || !strings.Contains(err.Error(), "exit status 3") {
		t.Errorf("a script exiting 3: %v", err)
	}
	pidFile := filepath.Join(dir, "child")
	hangs := write("hangs.sh", "sleep 600 &\necho $! > "+pidFile+"\nwait")
	start := time.Now()
	err := rtcr.RunActionForTest(hangs, "pre-resume", nil, nil, time.Second)
	if err == nil || !strings.Contains(err.Error(), "still running after 1s, killed") {
		t.Errorf("a script that hangs: %v", err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("a script that hangs held rtcr %v", d)
	}
	b, rerr := os.ReadFile(pidFile)
	if rerr != nil {
		t.Fatal(rerr)
	}
	child, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", child))
		if err != nil || strings.Contains(string(st), ") Z ") {
			break // gone, or a zombie waiting for its reaper
		}
		if time.Now().After(deadline) {
			t.Fatalf("the script's background child %d still runs", child)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
