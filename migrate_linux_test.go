package rtcr_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rtcr/rtcr/internal/testutil"
	"github.com/rtcr/rtcr/internal/wire"
	"golang.org/x/sys/unix"
)

// The migration tests run `rtcr serve` in namespace a (the destination)
// and the source in namespace b, joined by a veth pair (netPair). Both
// are on this host and share its pid namespace, so the sources are trees
// started by `rtcr run`: their pids live in their own pid namespace and
// the copy restored by serve gets a new one, so it never collides with
// the source, which is still frozen while the copy is restored.

// servePort is the port rtcr serve listens on in namespace a.
const servePort = "17070"

// writeToken writes a fresh token file (mode 0600) into dir.
func writeToken(t *testing.T, dir string) string {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "token")
	if err := os.WriteFile(path, []byte(base64.StdEncoding.EncodeToString(b)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// served is an `rtcr serve` started by a test.
type served struct {
	cmd  *exec.Cmd
	dir  string // its --dir
	log  string // its stderr
	done chan struct{}
}

// startServe runs rtcr serve in namespace a with images in dir, and waits
// until it listens. It is stopped at the end of the test.
func startServe(t *testing.T, np *netPair, dir, token string, extra ...string) *served {
	t.Helper()
	logf, err := os.CreateTemp(t.TempDir(), "serve-*.log")
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	args := append([]string{"serve", "--listen", np.addrA + ":" + servePort, "--dir", dir, "--token-file", token}, extra...)
	cmd := np.command(np.a, testutil.BuildRtcr(t), args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &served{cmd: cmd, dir: dir, log: logf.Name(), done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-s.done
		}
	})
	testutil.WaitForFile(t, s.log, "listening on", 30*time.Second)
	return s
}

// entries lists what serve's directory holds.
func (s *served) entries(t *testing.T) []string {
	t.Helper()
	ents, err := os.ReadDir(s.dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// memWriter is a memwriter started by `rtcr run` in namespace b.
type memWriter struct {
	cmd *exec.Cmd
	out string
}

// startMemWriter starts `rtcr run -- memwriter MiB 10` in namespace b and
// waits for its first lines; it is killed at the end of the test.
func startMemWriter(t *testing.T, np *netPair, mib int) *memWriter {
	t.Helper()
	dir := t.TempDir()
	out, f := testutil.OutputFile(t, dir)
	defer f.Close()
	cmd := np.command(np.b, testutil.BuildRtcr(t), "run", "--", testutil.BuildC(t, "memwriter", false), strconv.Itoa(mib), "10")
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	testutil.WaitForLines(t, out, 5, 60*time.Second)
	// The init of its pid namespace outlives a killed rtcr run: killing
	// it ends the namespace.
	init := nsInit(t, cmd.Process.Pid)
	t.Cleanup(func() { _ = unix.Kill(init, unix.SIGKILL) })
	return &memWriter{cmd: cmd, out: out}
}

// lines returns the writer's complete lines, failing on a FAIL line.
func (w *memWriter) lines(t *testing.T, n int) []string {
	t.Helper()
	lines := testutil.WaitForLines(t, w.out, n, 60*time.Second)
	for _, l := range lines {
		if strings.HasPrefix(l, "FAIL") {
			t.Fatalf("memwriter: %s", l)
		}
	}
	return lines
}

// migrate runs rtcr migrate in namespace b and returns its output and
// exit status.
func migrate(t *testing.T, np *netPair, pid int, token string, extra ...string) (string, int) {
	t.Helper()
	args := append([]string{"migrate", "--pid", strconv.Itoa(pid), "--to", np.addrA + ":" + servePort, "--token-file", token}, extra...)
	cmd := np.command(np.b, testutil.BuildRtcr(t), args...)
	out, err := cmd.CombinedOutput()
	return string(out), exitCode(t, err)
}

func exitCode(t *testing.T, err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	t.Fatal(err)
	return -1
}

// restoredInit parses "init pid N" out of rtcr migrate's (or restore's) output and kills
// that process (the destination's copy) at the end of the test.
func restoredInit(t *testing.T, out string) int {
	t.Helper()
	i := strings.Index(out, "init pid ")
	if i < 0 {
		t.Fatalf("rtcr migrate said %q: no init pid", out)
	}
	var pid, prog int
	if _, err := fmt.Sscanf(out[i:], "init pid %d, program pid %d", &pid, &prog); err != nil {
		t.Fatalf("rtcr migrate said %q: %v", out, err)
	}
	t.Cleanup(func() { _ = unix.Kill(pid, unix.SIGKILL) })
	return prog
}

// programsOf lists the pids of processes running exe.
func programsOf(exe string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if p, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil && p == exe {
			pids = append(pids, pid)
		}
	}
	return pids
}

// TestMigrate moves a memory writer (an `rtcr run` tree) from namespace b
// to the rtcr serve in namespace a: its numbers continue without a gap,
// its memory checks pass, the copy runs in namespace a, and the source
// is gone.
func TestMigrate(t *testing.T) {
	testutil.RequireRoot(t)
	np := newNetPair(t)
	token := writeToken(t, t.TempDir())
	srv := startServe(t, np, filepath.Join(t.TempDir(), "images"), token)
	w := startMemWriter(t, np, 64)
	out, code := migrate(t, np, w.cmd.Process.Pid, token, "--name", "writer")
	if code != 0 {
		t.Fatalf("rtcr migrate: exit %d: %s\nserve:\n%s", code, out, readFile(srv.log))
	}
	t.Logf("%s", strings.TrimSpace(out))
	prog := restoredInit(t, out)
	if err := w.cmd.Wait(); err == nil || exitCode(t, err) != 128+9 {
		t.Errorf("the source's rtcr run ended with %v, want killed (exit 137)", err)
	}
	n := len(w.lines(t, 1))
	lines := w.lines(t, n+120) // two memory checks after the move at least
	checkConsecutive(t, lines)
	var st unix.Stat_t
	if err := unix.Stat(fmt.Sprintf("/proc/%d/ns/net", prog), &st); err != nil {
		t.Fatal(err)
	}
	if st.Ino != np.netnsIno(np.a) {
		t.Errorf("the restored program %d is not in the destination's network namespace", prog)
	}
	if got := srv.entries(t); len(got) != 1 || got[0] != "writer" {
		t.Errorf("serve's directory holds %v, want [writer]", got)
	}
}

// TestMigrateWrongToken: a client with the wrong token is refused before
// anything is written on the server, and its source runs on; the same
// for dump --page-server, which then does not kill its target.
func TestMigrateWrongToken(t *testing.T) {
	testutil.RequireRoot(t)
	np := newNetPair(t)
	srv := startServe(t, np, filepath.Join(t.TempDir(), "images"), writeToken(t, t.TempDir()))
	w := startMemWriter(t, np, 16)
	wrong := writeToken(t, t.TempDir())
	out, code := migrate(t, np, w.cmd.Process.Pid, wrong)
	if code != 1 || !strings.Contains(out, "refused the token") {
		t.Errorf("rtcr migrate with a wrong token: exit %d, %q", code, out)
	}
	dump := np.command(np.b, testutil.BuildRtcr(t), "dump", "--pid", strconv.Itoa(w.cmd.Process.Pid),
		"--page-server", np.addrA+":"+servePort, "--token-file", wrong)
	dout, err := dump.CombinedOutput()
	if c := exitCode(t, err); c != 1 || !strings.Contains(string(dout), "refused the token") {
		t.Errorf("rtcr dump --page-server with a wrong token: exit %d, %q", c, dout)
	}
	if got := srv.entries(t); len(got) != 0 {
		t.Errorf("serve's directory holds %v after wrong tokens, want nothing", got)
	}
	testutil.WaitForFile(t, srv.log, "wrong token", 30*time.Second)
	n := len(w.lines(t, 1))
	checkConsecutive(t, w.lines(t, n+20))
}

// TestMigrateSourceKilled kills rtcr migrate in the middle of sending
// (the link throttled so that it lasts): the source runs on, and the
// destination keeps nothing, neither files nor a process.
func TestMigrateSourceKilled(t *testing.T) {
	testutil.RequireRoot(t)
	np := newNetPair(t)
	np.throttle(np.b, "80mbit")
	token := writeToken(t, t.TempDir())
	srv := startServe(t, np, filepath.Join(t.TempDir(), "images"), token)
	w := startMemWriter(t, np, 64)
	cmd := np.command(np.b, testutil.BuildRtcr(t), "migrate", "--pid", strconv.Itoa(w.cmd.Process.Pid),
		"--to", np.addrA+":"+servePort, "--token-file", token)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitStaged(t, srv, 4<<20)
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	deadline := time.Now().Add(60 * time.Second)
	for len(srv.entries(t)) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("serve's directory still holds %v after the source was killed; serve:\n%s", srv.entries(t), readFile(srv.log))
		}
		time.Sleep(20 * time.Millisecond)
	}
	testutil.WaitForFile(t, srv.log, "not stored", 30*time.Second)
	// One memwriter: the source's. Nothing was restored.
	if pids := programsOf(testutil.BuildC(t, "memwriter", false)); len(pids) != 1 {
		t.Errorf("memwriter processes %v, want only the source", pids)
	}
	n := len(w.lines(t, 1))
	checkConsecutive(t, w.lines(t, n+20))
}

// TestMigrateDestinationKilled kills rtcr serve in the middle of
// receiving: rtcr migrate fails saying the source runs on, and it does.
// A new rtcr serve on the same directory removes the staging directory
// the killed one left.
func TestMigrateDestinationKilled(t *testing.T) {
	testutil.RequireRoot(t)
	np := newNetPair(t)
	np.throttle(np.b, "80mbit")
	token := writeToken(t, t.TempDir())
	dir := filepath.Join(t.TempDir(), "images")
	srv := startServe(t, np, dir, token)
	w := startMemWriter(t, np, 64)
	cmd := np.command(np.b, testutil.BuildRtcr(t), "migrate", "--pid", strconv.Itoa(w.cmd.Process.Pid),
		"--to", np.addrA+":"+servePort, "--token-file", token)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitStaged(t, srv, 4<<20)
	_ = srv.cmd.Process.Kill()
	<-srv.done
	code := exitCode(t, cmd.Wait())
	if code != 1 || !strings.Contains(out.String(), "the source runs on") {
		t.Errorf("rtcr migrate after the destination died: exit %d, %q", code, out.String())
	}
	n := len(w.lines(t, 1))
	checkConsecutive(t, w.lines(t, n+20))
	startServe(t, np, dir, token)
	if got := srv.entries(t); len(got) != 0 {
		t.Errorf("a new serve left %v in its directory, want nothing", got)
	}
}

// waitStaged waits until serve's staging directory holds a temporary
// file of at least size bytes: the transfer is under way.
func waitStaged(t *testing.T, srv *served, size int64) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		matches, _ := filepath.Glob(filepath.Join(srv.dir, ".incoming-*", ".pages-*"))
		for _, m := range matches {
			if fi, err := os.Stat(m); err == nil && fi.Size() >= size {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no transfer seen in %s; serve:\n%s", srv.dir, readFile(srv.log))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// TestMigrateNoGo plays a source that dies after the destination is
// ready and before it says Go: the destination's copy, restored but held,
// is killed before it ever ran, and the image stays for a restore by hand
// (the source may be dead). The image comes from a dump -R of a memwriter
// tree that runs on, so that nothing is lost in the test.
func TestMigrateNoGo(t *testing.T) {
	testutil.RequireRoot(t)
	np := newNetPair(t)
	token := writeToken(t, t.TempDir())
	srv := startServe(t, np, filepath.Join(t.TempDir(), "images"), token)
	w := startMemWriter(t, np, 16)
	img := filepath.Join(t.TempDir(), "img")
	dump := np.command(np.b, testutil.BuildRtcr(t), "dump", "-R", "--pid", strconv.Itoa(w.cmd.Process.Pid), "--dir", img)
	if out, err := dump.CombinedOutput(); err != nil {
		t.Fatalf("rtcr dump -R: %v: %s", err, out)
	}
	tok, err := wire.ReadToken(token)
	if err != nil {
		t.Fatal(err)
	}
	var c *wire.Conn
	if err := np.inNetns(np.b, func() error {
		nc, err := net.Dial("tcp", np.addrA+":"+servePort)
		if err != nil {
			return err
		}
		c, err = wire.Client(nc, tok)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SendNow(wire.Open, wire.OpenRequest(wire.ModeMigrate, "nogo")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Expect(wire.OK); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SendImage(img); err != nil {
		t.Fatal(err)
	}
	for _, want := range []wire.Type{wire.Stored, wire.Ready} {
		if _, err := c.Expect(want); err != nil {
			t.Fatalf("waiting for %v: %v\nserve:\n%s", want, err, readFile(srv.log))
		}
	}
	// Held: restored, not running. The source "dies" here.
	c.Close()
	testutil.WaitForFile(t, srv.log, "killed before it ran", 60*time.Second)
	if pids := programsOf(testutil.BuildC(t, "memwriter", false)); len(pids) != 1 {
		t.Errorf("memwriter processes %v, want only the source", pids)
	}
	if got := srv.entries(t); len(got) != 1 || got[0] != "nogo" {
		t.Errorf("serve's directory holds %v, want the image kept: [nogo]", got)
	}
	n := len(w.lines(t, 1))
	checkConsecutive(t, w.lines(t, n+20))
}

// TestDumpPageServer: rtcr dump --page-server stores the image on the
// server and only then kills the target; the stored image restores (here
// in the destination's namespace) and the numbers continue.
func TestDumpPageServer(t *testing.T) {
	testutil.RequireRoot(t)
	np := newNetPair(t)
	token := writeToken(t, t.TempDir())
	srv := startServe(t, np, filepath.Join(t.TempDir(), "images"), token)
	w := startMemWriter(t, np, 16)
	dump := np.command(np.b, testutil.BuildRtcr(t), "dump", "--pid", strconv.Itoa(w.cmd.Process.Pid),
		"--page-server", np.addrA+":"+servePort, "--token-file", token, "--name", "ck")
	out, err := dump.CombinedOutput()
	if err != nil {
		t.Fatalf("rtcr dump --page-server: %v: %s\nserve:\n%s", err, out, readFile(srv.log))
	}
	t.Logf("%s", strings.TrimSpace(string(out)))
	_ = w.cmd.Wait() // killed by the dump
	if got := srv.entries(t); len(got) != 1 || got[0] != "ck" {
		t.Fatalf("serve's directory holds %v, want [ck]", got)
	}
	n := len(w.lines(t, 1))
	restore := np.command(np.a, testutil.BuildRtcr(t), "restore", "--dir", filepath.Join(srv.dir, "ck"))
	rout, err := restore.CombinedOutput()
	if err != nil {
		t.Fatalf("rtcr restore of the stored image: %v: %s", err, rout)
	}
	restoredInit(t, string(rout))
	checkConsecutive(t, w.lines(t, n+20))
}

// TestMigrateTLS: with TLS, a client whose certificate another CA signed,
// and a client without TLS, are refused before anything is written; one
// with a certificate of the server's CA migrates.
func TestMigrateTLS(t *testing.T) {
	testutil.RequireRoot(t)
	np := newNetPair(t)
	certs := t.TempDir()
	ca := newTestCA(t, certs, "ca")
	srvCert, srvKey := ca.issue(t, certs, np.addrA, true)
	cliCert, cliKey := ca.issue(t, certs, "client", false)
	other := newTestCA(t, certs, "other")
	badCert, badKey := other.issue(t, certs, "intruder", false)
	token := writeToken(t, t.TempDir())
	srv := startServe(t, np, filepath.Join(t.TempDir(), "images"), token, "--tls-cert", srvCert, "--tls-key", srvKey, "--tls-ca", ca.pem)
	w := startMemWriter(t, np, 16)
	pid := w.cmd.Process.Pid
	for _, bad := range [][]string{
		{"--tls-cert", badCert, "--tls-key", badKey, "--tls-ca", ca.pem},
		nil,
	} {
		out, code := migrate(t, np, pid, token, bad...)
		t.Logf("refused: %s", strings.TrimSpace(out))
		if code != 1 {
			t.Errorf("rtcr migrate %v: exit %d, %q", bad, code, out)
		}
		if got := srv.entries(t); len(got) != 0 {
			t.Fatalf("serve's directory holds %v after a refused client, want nothing", got)
		}
	}
	testutil.WaitForFile(t, srv.log, "TLS", 30*time.Second)
	out, code := migrate(t, np, pid, token, "--tls-cert", cliCert, "--tls-key", cliKey, "--tls-ca", ca.pem)
	if code != 0 {
		t.Fatalf("rtcr migrate with TLS: exit %d: %s\nserve:\n%s", code, out, readFile(srv.log))
	}
	restoredInit(t, out)
	n := len(w.lines(t, 1))
	checkConsecutive(t, w.lines(t, n+20))
}

// TestMigrateHostPidsTaken migrates a process outside `rtcr run` to a
// server on the same host: its pid is taken (by itself, frozen), so the
// destination refuses the restore and the source runs on, counting.
func TestMigrateHostPidsTaken(t *testing.T) {
	testutil.RequireRoot(t)
	np := newNetPair(t)
	token := writeToken(t, t.TempDir())
	srv := startServe(t, np, filepath.Join(t.TempDir(), "images"), token)
	dir := t.TempDir()
	out, f := testutil.OutputFile(t, dir)
	defer f.Close()
	cmd := np.command(np.b, testutil.BuildC(t, "memwriter", false), "4", "10")
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	w := &memWriter{cmd: cmd, out: out}
	w.lines(t, 5)
	mout, code := migrate(t, np, cmd.Process.Pid, token)
	if code != 1 || !strings.Contains(mout, "the source runs on") {
		t.Fatalf("rtcr migrate of a host process to the same host: exit %d, %q\nserve:\n%s", code, mout, readFile(srv.log))
	}
	t.Logf("%s", strings.TrimSpace(mout))
	n := len(w.lines(t, 1))
	checkConsecutive(t, w.lines(t, n+20))
	if got := srv.entries(t); len(got) != 0 {
		t.Errorf("serve's directory holds %v after a refused restore, want nothing", got)
	}
}
