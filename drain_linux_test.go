package rtcr_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rtcr/rtcr"
	"github.com/rtcr/rtcr/internal/files"
	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/netlock"
	"github.com/rtcr/rtcr/internal/testutil"
	"github.com/rtcr/rtcr/internal/tree"
)

// clients keeps n clients connecting to a server, one request a
// connection ("N\n", reply "N <N*7> <server pid>"), until stopped; any
// failure (a refused or reset connection, a wrong reply) is recorded.
type clients struct {
	mu     sync.Mutex
	served int
	byPid  map[int]int
	errs   []error
	stop   chan struct{}
	wg     sync.WaitGroup
}

func startClients(addr string, n int) *clients {
	c := &clients{byPid: map[int]int{}, stop: make(chan struct{})}
	for i := 0; i < n; i++ {
		c.wg.Add(1)
		go func(i int) {
			defer c.wg.Done()
			for k := int64(i) * 1000000; ; k++ {
				select {
				case <-c.stop:
					return
				default:
				}
				pid, err := ask(addr, k)
				c.mu.Lock()
				if err != nil {
					c.errs = append(c.errs, err)
				} else {
					c.served++
					c.byPid[pid]++
				}
				c.mu.Unlock()
				if err != nil {
					return
				}
			}
		}(i)
	}
	return c
}

// ask makes one connection to addr with request k and returns the pid
// that answered. The timeouts are generous: a client's SYN held back by
// the drain or the network lock is sent again after 1, 3, 7, 15 … s.
func ask(addr string, k int64) (int, error) {
	conn, err := net.DialTimeout("tcp", addr, 90*time.Second)
	if err != nil {
		return 0, fmt.Errorf("request %d: %w", k, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(90 * time.Second))
	if _, err := fmt.Fprintf(conn, "%d\n", k); err != nil {
		return 0, fmt.Errorf("request %d: write: %w", k, err)
	}
	b, err := io.ReadAll(conn)
	if err != nil {
		return 0, fmt.Errorf("request %d: read: %w", k, err)
	}
	f := strings.Fields(string(b))
	if len(f) != 3 || f[0] != strconv.FormatInt(k, 10) || f[1] != strconv.FormatInt(7*k, 10) {
		return 0, fmt.Errorf("request %d: reply %q", k, b)
	}
	return strconv.Atoi(f[2])
}

// count returns how many requests were served, and by which pids.
func (c *clients) count() (int, map[int]int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := map[int]int{}
	for p, n := range c.byPid {
		m[p] = n
	}
	return c.served, m
}

// waitFor waits until ok holds of the counts (a failed client fails the
// test).
func (c *clients) waitFor(t *testing.T, what string, timeout time.Duration, ok func(served int, byPid map[int]int) bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		served, byPid := c.count()
		if ok(served, byPid) {
			return
		}
		c.mu.Lock()
		errs := c.errs
		c.mu.Unlock()
		if len(errs) > 0 {
			t.Fatalf("waiting for %s: a client failed: %v", what, errs[0])
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: %d served (%v) after %v", what, served, byPid, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// finish stops the clients and fails the test for every failure.
func (c *clients) finish(t *testing.T) {
	t.Helper()
	close(c.stop)
	c.wg.Wait()
	for _, err := range c.errs {
		t.Errorf("a client failed (a reset, a refusal or a lost request): %v", err)
	}
}

// dumpDrained dumps and kills tg while clients keep connecting, once its
// listener has connections waiting to be accepted, and checks the dump
// drained it: a drain step in the log, and the drain table gone after
// the dump while the network lock holds the port.
func dumpDrained(t *testing.T, tg *target) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ls, err := files.TCPListeners([]int{tg.pid})
		if err != nil {
			t.Fatal(err)
		}
		if len(ls) == 1 && ls[0].Queued > 0 {
			t.Logf("%v: %d connections queued before the dump", ls[0], ls[0].Queued)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no connection queued on the listener of %d within 30 s: %v", tg.pid, ls)
		}
		time.Sleep(time.Millisecond)
	}
	var log bytes.Buffer
	dir := t.TempDir()
	st, err := rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: tg.pid, Dir: dir, Logger: slog.New(slog.NewTextHandler(&log, nil))})
	if err != nil {
		t.Fatalf("dump: %v\n%s", err, log.String())
	}
	tg.reap()
	var drain string
	for _, l := range strings.Split(log.String(), "\n") {
		if strings.Contains(l, "msg=drain ") {
			drain = l
		}
	}
	if drain == "" {
		t.Fatalf("no drain step in the dump's log:\n%s", log.String())
	}
	t.Logf("dump frozen %v; %s", st.Freeze, drain[strings.Index(drain, "msg="):])
	c, err := image.ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = netlock.Unlock(c.NetLock) }) // a failed test's
	if c.NetLock == "" || !netlock.Exists(c.NetLock) {
		t.Fatalf("network lock %q not in place after the kill", c.NetLock)
	}
	if name := netlock.DrainName(strings.TrimPrefix(c.NetLock, "rtcr_"), os.Getpid()); netlock.Exists(name) {
		t.Errorf("drain table %s still there after the dump", name)
	}
	return dir
}

// TestTCPDrain checkpoints a server that accepts slowly (testdata/
// acceptor.c slow: its accept queue rarely empty) while four clients
// outside the tree keep connecting, kills it and restores it: the dump
// holds new connections back, lets the server accept the queued ones,
// and every client is served, none refused or reset, before, during and
// after the downtime.
func TestTCPDrain(t *testing.T) {
	testutil.RequireRoot(t)
	requireNft(t)
	tg := start(t, testutil.BuildC(t, "acceptor", false), "trigger", "slow")
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(serverPort(t, tg)))
	testutil.WaitForFile(t, tg.out, "ready\n", 10*time.Second)
	cl := startClients(addr, 4)
	defer func() {
		select {
		case <-cl.stop:
		default:
			cl.finish(t)
		}
	}()
	cl.waitFor(t, "10 requests served", 60*time.Second, func(n int, _ map[int]int) bool { return n >= 10 })
	dir := dumpDrained(t, tg)
	time.Sleep(300 * time.Millisecond) // clients knock at the lock
	tg.restore(dir)
	before, _ := cl.count()
	cl.waitFor(t, "30 requests served after the restore", 90*time.Second, func(n int, _ map[int]int) bool { return n >= before+30 })
	cl.finish(t)
	tg.fire()
	if code := tg.wait(30 * time.Second); code != 0 || !strings.Contains(tg.output(), "OK\n") {
		t.Fatalf("server exit %d, output:\n%s", code, tg.output())
	}
	served, _ := cl.count()
	t.Logf("%d requests served, %d before the restore", served, before)
}

// TestTCPDrainPrefork: a pre-fork server (testdata/acceptor.c prefork),
// parent and child accepting on one listener, goes through dump, kill
// and restore while clients keep connecting: the shared listener is
// drained once and restored shared, both processes serve again after
// the restore, and no client is refused or reset.
func TestTCPDrainPrefork(t *testing.T) {
	testutil.RequireRoot(t)
	requireNft(t)
	tg := start(t, testutil.BuildC(t, "acceptor", false), "trigger", "prefork")
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(serverPort(t, tg)))
	testutil.WaitForFile(t, tg.out, "ready\n", 10*time.Second)
	children, err := tree.ChildMap()
	if err != nil {
		t.Fatal(err)
	}
	if len(children[tg.pid]) != 1 {
		t.Fatalf("server %d has children %v, want one", tg.pid, children[tg.pid])
	}
	child := children[tg.pid][0]
	cl := startClients(addr, 6)
	defer func() {
		select {
		case <-cl.stop:
		default:
			cl.finish(t)
		}
	}()
	both := func(from map[int]int) func(int, map[int]int) bool {
		return func(_ int, m map[int]int) bool { return m[tg.pid] > from[tg.pid]+5 && m[child] > from[child]+5 }
	}
	cl.waitFor(t, "parent and child serving", 60*time.Second, both(nil))
	dir := dumpDrained(t, tg)
	time.Sleep(300 * time.Millisecond)
	tg.restore(dir)
	_, mark := cl.count()
	cl.waitFor(t, "parent and child serving after the restore", 90*time.Second, both(mark))
	cl.finish(t)
	tg.fire()
	if code := tg.wait(30 * time.Second); code != 0 || !strings.Contains(tg.output(), "OK\n") {
		t.Fatalf("server exit %d, output:\n%s", code, tg.output())
	}
	served, byPid := cl.count()
	t.Logf("%d requests served: %v (parent %d, child %d)", served, byPid, tg.pid, child)
}

// backlogWithClient starts testdata/tcpserver.c backlog (a listener
// that never accepts) with one client connection waiting in its queue.
func backlogWithClient(t *testing.T) *target {
	t.Helper()
	tg := start(t, testutil.BuildC(t, "tcpserver", false), "trigger", "backlog")
	c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(serverPort(t, tg))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	testutil.WaitForFile(t, tg.out, "ready\n", 10*time.Second)
	return tg
}

// drainTables returns the drain tables of rtcr process pid that exist.
func drainTables(t *testing.T, pid int) []string {
	t.Helper()
	var out []string
	for _, n := range rtcrTables(t) {
		if netlock.Exists(n + "_drain_" + strconv.Itoa(pid)) {
			out = append(out, n+"_drain_"+strconv.Itoa(pid))
		}
	}
	return out
}

// TestTCPDrainInterrupted: a dump cancelled (Ctrl-C) while it waits for
// a listener's queue to empty returns ErrInterrupted, removes its drain
// table and leaves the server running untouched.
func TestTCPDrainInterrupted(t *testing.T) {
	testutil.RequireRoot(t)
	requireNft(t)
	tg := backlogWithClient(t)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		// Cancel once the drain table is in, while the dump waits.
		deadline := time.Now().Add(30 * time.Second)
		for len(drainTables(t, os.Getpid())) == 0 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
	}()
	_, err := rtcr.Dump(ctx, rtcr.DumpOptions{Pid: tg.pid, Dir: t.TempDir()})
	cancel()
	if !errors.Is(err, rtcr.ErrInterrupted) {
		t.Fatalf("dump cancelled during the drain: %v, want ErrInterrupted", err)
	}
	if l := drainTables(t, os.Getpid()); len(l) > 0 {
		t.Errorf("drain tables left after the interrupted dump: %v", l)
	}
	tg.runsOnOK()
}

// TestTCPDrainKilled: `rtcr dump` killed with SIGKILL while it waits for
// a listener's queue leaves its drain table (documented: the user
// deletes it, or the next dump does) and the server running, never
// frozen; the next dump of a tree with a listener removes that table.
func TestTCPDrainKilled(t *testing.T) {
	testutil.RequireRoot(t)
	requireNft(t)
	tg := backlogWithClient(t)
	cmd := exec.Command(testutil.BuildRtcr(t), "dump", "--pid", strconv.Itoa(tg.pid), "--dir", filepath.Join(t.TempDir(), "img"))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	var left []string
	for len(left) == 0 {
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatalf("no drain table of rtcr %d within 30 s", cmd.Process.Pid)
		}
		time.Sleep(5 * time.Millisecond)
		left = drainTables(t, cmd.Process.Pid)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	t.Cleanup(func() { _ = netlock.Unlock(left[0]) })
	if !netlock.Exists(left[0]) {
		t.Fatalf("drain table %s gone after rtcr was killed", left[0])
	}
	if tp := tracerPid(tg.pid); tp != 0 {
		t.Fatalf("server %d traced by %d after the killed dump", tg.pid, tp)
	}
	// The next dump, of another server with a listener, sweeps it.
	other := start(t, testutil.BuildC(t, "tcpserver", false), "trigger", "backlog")
	serverPort(t, other)
	testutil.WaitForFile(t, other.out, "ready\n", 10*time.Second)
	other.dump(true)
	if netlock.Exists(left[0]) {
		t.Errorf("drain table %s of the killed dump still there after the next dump", left[0])
	}
	tg.runsOnOK()
	other.runsOnOK()
}

// slipIn returns a drain hook that, at the freezes for which when(try)
// holds, lets one connection slip past the drain into the frozen
// server's accept queue, as a connection racing the freeze would: it
// deletes the drain table (the next try installs it again), connects,
// sends request try and waits until the connection is queued.
func slipIn(t *testing.T, tg *target, addr string, when func(try int) bool, conns *[]net.Conn) func(int, string) {
	return func(try int, table string) {
		if !when(try) {
			return
		}
		if err := netlock.Unlock(table); err != nil {
			t.Error(err)
			return
		}
		c, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			t.Errorf("connect past the drain: %v", err)
			return
		}
		*conns = append(*conns, c)
		if _, err := fmt.Fprintf(c, "%d\n", try); err != nil {
			t.Error(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			ls, err := files.TCPListeners([]int{tg.pid})
			if err == nil && len(ls) == 1 && ls[0].Queued > 0 {
				return
			}
			time.Sleep(time.Millisecond)
		}
		t.Errorf("the connection made at freeze %d is not in the accept queue", try)
	}
}

// TestTCPDrainRetry: a connection that enters the accept queue at the
// freeze (made by a test hook while the server is frozen) makes the dump
// let the server run and accept it, then freeze again; the dump, kill
// and restore go on and the connection is served.
func TestTCPDrainRetry(t *testing.T) {
	testutil.RequireRoot(t)
	requireNft(t)
	tg := start(t, testutil.BuildC(t, "acceptor", false), "trigger", "slow")
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(serverPort(t, tg)))
	testutil.WaitForFile(t, tg.out, "ready\n", 10*time.Second)
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	rtcr.SetDrainFrozenHookForTest(slipIn(t, tg, addr, func(try int) bool { return try == 1 }, &conns))
	defer rtcr.SetDrainFrozenHookForTest(nil)
	var log bytes.Buffer
	dir := t.TempDir()
	if _, err := rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: tg.pid, Dir: dir, Logger: slog.New(slog.NewTextHandler(&log, nil))}); err != nil {
		t.Fatalf("dump: %v\n%s", err, log.String())
	}
	tg.reap()
	rtcr.SetDrainFrozenHookForTest(nil)
	if !strings.Contains(log.String(), "a connection was queued at the freeze") || !strings.Contains(log.String(), "tries=2") {
		t.Fatalf("the dump did not freeze twice:\n%s", log.String())
	}
	c, err := image.ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = netlock.Unlock(c.NetLock) })
	tg.restore(dir)
	if len(conns) != 1 {
		t.Fatalf("%d connections slipped in, want 1", len(conns))
	}
	_ = conns[0].SetDeadline(time.Now().Add(60 * time.Second))
	b, err := io.ReadAll(conns[0])
	if f := strings.Fields(string(b)); err != nil || len(f) != 3 || f[0] != "1" || f[1] != "7" {
		t.Fatalf("the connection queued at the freeze: reply %q, %v", b, err)
	}
	tg.fire()
	if code := tg.wait(30 * time.Second); code != 0 || !strings.Contains(tg.output(), "OK\n") {
		t.Fatalf("server exit %d, output:\n%s", code, tg.output())
	}
}

// TestTCPDrainRefusedAfterTries: when a connection enters the queue at
// every one of the 3 freezes, the dump is refused naming the listener
// and the count; the server runs on and serves them, and the drain
// table is gone.
func TestTCPDrainRefusedAfterTries(t *testing.T) {
	testutil.RequireRoot(t)
	requireNft(t)
	tg := start(t, testutil.BuildC(t, "acceptor", false), "trigger", "slow")
	port := serverPort(t, tg)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	testutil.WaitForFile(t, tg.out, "ready\n", 10*time.Second)
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	rtcr.SetDrainFrozenHookForTest(slipIn(t, tg, addr, func(int) bool { return true }, &conns))
	defer rtcr.SetDrainFrozenHookForTest(nil)
	tg.dumpRefused("fd 3 (", fmt.Sprintf("127.0.0.1:%d (LISTEN)", port), "connections not accepted yet at each of 3 freezes")
	rtcr.SetDrainFrozenHookForTest(nil)
	if l := drainTables(t, os.Getpid()); len(l) > 0 {
		t.Errorf("drain tables left after the refused dump: %v", l)
	}
	for i, c := range conns {
		_ = c.SetDeadline(time.Now().Add(60 * time.Second))
		if b, err := io.ReadAll(c); err != nil || !strings.HasPrefix(string(b), strconv.Itoa(i+1)+" ") {
			t.Errorf("connection %d: reply %q, %v", i+1, b, err)
		}
	}
	tg.runsOnOK()
}
