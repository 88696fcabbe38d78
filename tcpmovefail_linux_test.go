package rtcr_test

import (
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/rtcr/rtcr/internal/testutil"
	"github.com/rtcr/rtcr/internal/wire"
)

// TestMigrateTCPHeldCopySilent: while the destination holds its copy
// (ready, before go), the copy's connections must neither answer nor
// take a segment, so that a migration failing then leaves the client
// with the source intact. The address is on both hosts (the case where
// the client's segments can reach the destination early, as with
// anycast). The image comes from a `dump -R` of the echo server, which
// runs on; a wire client plays the source up to Ready. Meanwhile c's
// route leads to the destination and the client sends: the restore's
// network lock must drop every segment (nothing echoed, nothing
// acknowledged, no reset). Then the route comes back and the "source"
// goes away before go: the held copy is killed (its connections in
// repair mode: no packet), the destination's lock goes with it, and
// every line comes back from the source, in order.
func TestMigrateTCPHeldCopySilent(t *testing.T) {
	testutil.RequireRoot(t)
	w := newTCPWorld(t, true)
	token := writeToken(t, t.TempDir())
	srv := startServe(t, w.netPair, filepath.Join(t.TempDir(), "images"), token)
	run := startEchoServer(t, w)
	e := dialEcho(t, w)
	if err := e.send(20, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	e.wait(t, "before the dump")
	img := filepath.Join(t.TempDir(), "img")
	dump := w.command(w.b, testutil.BuildRtcr(t), "dump", "-R", "--pid", strconv.Itoa(run.Process.Pid), "--dir", img)
	if out, err := dump.CombinedOutput(); err != nil {
		t.Fatalf("rtcr dump -R: %v: %s", err, out)
	}
	// Nothing is sent from here until the route leads to the held copy:
	// the source's connection and its copy's are then in the same
	// state, so segments the copy took would be acknowledged for good.

	tok, err := wire.ReadToken(token)
	if err != nil {
		t.Fatal(err)
	}
	var c *wire.Conn
	if err := w.inNetns(w.b, func() error {
		nc, err := net.Dial("tcp", w.addrA+":"+servePort)
		if err != nil {
			return err
		}
		c, err = wire.Client(nc, tok)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SendNow(wire.Open, wire.OpenRequest(wire.ModeMigrate, "held")); err != nil {
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
	if tables := nftTables(t, w.a); len(tables) != 1 {
		t.Fatalf("the destination holds its copy with network locks %v, want the restore's", tables)
	}
	route := func(via string) {
		t.Helper()
		if out, err := exec.Command("ip", "-n", w.c, "route", "replace", w.svc+w.host, "via", via).CombinedOutput(); err != nil {
			t.Fatalf("ip route replace: %v: %s", err, out)
		}
	}
	route(w.a2) // to the held copy
	e.mu.Lock()
	before := e.got
	e.mu.Unlock()
	if err := e.send(20, 10*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	e.mu.Lock()
	got, rerr := e.got, e.err
	e.mu.Unlock()
	if rerr != nil {
		t.Fatalf("while the copy was held: %v", rerr)
	}
	if got != before {
		t.Fatalf("%d lines echoed while the route led to the held copy, want none", got-before)
	}
	route(w.b1) // back to the source
	c.Close()   // the source "dies" before go
	testutil.WaitForFile(t, srv.log, "killed before it ran", 60*time.Second)
	if tables := nftTables(t, w.a); len(tables) != 0 {
		t.Errorf("the destination keeps network locks %v after its held copy was killed", tables)
	}
	if pid := echoIn(t, w.netnsIno(w.a)); pid != 0 {
		t.Errorf("an echoserver (%d) runs in the destination's namespace", pid)
	}
	e.wait(t, "the lines sent while the copy was held, from the source")
	if err := e.send(20, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	e.wait(t, fmt.Sprintf("after the failed migration (%d lines in all)", e.sent))
}
