package rtcr_test

import (
	"bufio"
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/netlock"
	"github.com/rtcr/rtcr/internal/procfs"
	"github.com/rtcr/rtcr/internal/testutil"
	"golang.org/x/sys/unix"
)

// requireNft skips a test when the nft command (the network lock's) is
// missing.
func requireNft(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("nft (Debian package nftables) is not installed")
	}
}

// serverPort waits for the "port N" line of tg and returns N.
func serverPort(t *testing.T, tg *target) int {
	t.Helper()
	testutil.WaitForFile(t, tg.out, "port ", 10*time.Second)
	m := regexp.MustCompile(`port (\d+)`).FindStringSubmatch(tg.output())
	if m == nil {
		t.Fatalf("no port in %q", tg.output())
	}
	p, _ := strconv.Atoi(m[1])
	return p
}

// rtcrTables returns the nftables tables named rtcr_… that exist.
func rtcrTables(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("nft", "list", "tables").CombinedOutput()
	if err != nil {
		t.Fatalf("nft list tables: %v: %s", err, out)
	}
	return regexp.MustCompile(`rtcr_[0-9a-f]{16}`).FindAllString(string(out), -1)
}

// stream is one client connection sending numbered requests, four at a
// time, and checking each reply ("N N*7 padding"). A bulk stream asks
// for 400 replies at a time ("bulk N") and reads them slowly through a
// small receive buffer, which keeps the server's send queue full; it
// counts a batch per 40 replies.
type stream struct {
	c       net.Conn
	bulk    bool
	next    int64
	ahead   int64       // bulk: the next request to send
	hold    atomic.Bool // stop reading for now
	batches atomic.Int64
	err     error
}

func (s *stream) run(stop <-chan struct{}, wg *sync.WaitGroup) {
	defer wg.Done()
	r := bufio.NewReader(s.c)
	for {
		select {
		case <-stop:
			return
		default:
		}
		// Generous: a restore, and the peer's retransmission backoff
		// after it, take seconds on a busy machine.
		_ = s.c.SetDeadline(time.Now().Add(60 * time.Second))
		var req strings.Builder
		n := int64(4)
		if s.bulk {
			// One request ahead of the one read: the server always
			// has replies to send.
			n = 400
			if s.ahead == 0 {
				s.ahead = s.next
			}
			for s.ahead <= s.next+n {
				fmt.Fprintf(&req, "bulk %d\n", s.ahead)
				s.ahead += n
			}
		} else {
			for i := int64(0); i < n; i++ {
				fmt.Fprintf(&req, "%d\n", s.next+i)
			}
		}
		if _, err := s.c.Write([]byte(req.String())); err != nil {
			s.err = fmt.Errorf("write request %d: %w", s.next, err)
			return
		}
		for i := int64(0); i < n; i++ {
			if s.bulk && i%4 == 0 {
				time.Sleep(time.Millisecond)
			}
			for s.hold.Load() {
				time.Sleep(time.Millisecond)
			}
			line, err := r.ReadString('\n')
			if err != nil {
				s.err = fmt.Errorf("read reply %d: %w", s.next, err)
				return
			}
			f := strings.Fields(line)
			if len(f) != 3 || f[0] != strconv.FormatInt(s.next, 10) || f[1] != strconv.FormatInt(7*s.next, 10) || len(f[2]) != 600 {
				s.err = fmt.Errorf("reply to request %d: %.40q", s.next, line)
				return
			}
			s.next++
			if s.bulk && i%40 == 39 {
				s.batches.Add(1)
			}
		}
		if !s.bulk {
			s.batches.Add(1)
		}
	}
}

// waitBatches waits until every stream has made n more batches than at
// its mark (a stream that failed fails the test).
func waitBatches(t *testing.T, ss []*stream, n int64, timeout time.Duration) {
	t.Helper()
	marks := make([]int64, len(ss))
	for i, s := range ss {
		marks[i] = s.batches.Load()
	}
	deadline := time.Now().Add(timeout)
	for i := 0; i < len(ss); {
		if ss[i].batches.Load() >= marks[i]+n {
			i++
			continue
		}
		if time.Now().After(deadline) {
			t.Fatalf("connection %d made %d batches in %v, want %d (err %v)", i, ss[i].batches.Load()-marks[i], timeout, n, ss[i].err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// startStreams connects n clients to addr, the last bulk of them bulk
// streams, and starts them.
func startStreams(t *testing.T, addr string, n, bulk int) ([]*stream, func()) {
	t.Helper()
	var ss []*stream
	for i := 0; i < n; i++ {
		d := net.Dialer{Timeout: 10 * time.Second}
		if i >= n-bulk {
			d.Control = func(network, address string, c syscall.RawConn) error {
				return c.Control(func(fd uintptr) { _ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 8192) })
			}
		}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		ss = append(ss, &stream{c: c, bulk: i >= n-bulk, next: int64(i) * 1000000})
	}
	stop := make(chan struct{})
	wg := &sync.WaitGroup{}
	for _, s := range ss {
		wg.Add(1)
		go s.run(stop, wg)
	}
	return ss, func() {
		close(stop)
		wg.Wait()
		for i, s := range ss {
			if s.err != nil {
				t.Errorf("connection %d: %v (a reset or a lost request)", i, s.err)
			}
		}
	}
}

// TestTCPServerRoundTrip checkpoints testdata/tcpserver.c in the middle
// of three streams of pipelined requests from the test (outside the
// tree), kills it, keeps the streams sending for a while, and restores
// it: every stream goes on without an error (no reset, no EPIPE, no
// reply lost or out of order), the network lock is in place between the
// kill and the restore and gone after, a new connection is accepted on
// the same listening socket, and the server finds from inside that
// every option of its connections and of its listener came back.
func TestTCPServerRoundTrip(t *testing.T) {
	testutil.RequireRoot(t)
	requireNft(t)
	bin := testutil.BuildC(t, "tcpserver", false)
	for _, tc := range []struct{ mode, host string }{{"tcp4", "127.0.0.1"}, {"tcp6", "::1"}} {
		t.Run(tc.mode, func(t *testing.T) {
			tg := start(t, bin, "trigger", tc.mode)
			addr := net.JoinHostPort(tc.host, strconv.Itoa(serverPort(t, tg)))
			ss, stop := startStreams(t, addr, 4, 1)
			testutil.WaitForFile(t, tg.out, "ready\n", 10*time.Second)
			// A fifth connection whose requests wait unread in the
			// server's receive queue until the trigger.
			paused, err := net.DialTimeout("tcp", addr, 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer paused.Close()
			if _, err := paused.Write([]byte("pause\n")); err != nil {
				t.Fatal(err)
			}
			time.Sleep(200 * time.Millisecond)
			if _, err := paused.Write([]byte("5\n6\n")); err != nil {
				t.Fatal(err)
			}
			waitBatches(t, ss, 20, 30*time.Second)
			// The bulk stream stops reading until after the restore:
			// the server's send queue is full at the dump.
			ss[3].hold.Store(true)
			time.Sleep(300 * time.Millisecond)
			dir := tg.dump(false)
			c, err := image.ReadManifest(dir)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = netlock.Unlock(c.NetLock) }) // a failed test's
			conns, rcvq, unsent := 0, 0, 0
			for _, fd := range c.Processes[0].FDs {
				if tc := fd.Inet; tc != nil && tc.TCP != nil {
					conns++
					rcvq += len(tc.TCP.RcvQueue)
					unsent += tc.TCP.Unsent
					t.Logf("fd %d: send queue %d bytes (%d unsent), receive queue %d bytes, options %#x, mss %d", fd.Num, len(tc.TCP.SndQueue), tc.TCP.Unsent, len(tc.TCP.RcvQueue), tc.TCP.Options, tc.TCP.MSS)
				}
			}
			// The paused connection's requests are in a receive queue,
			// the bulk stream's replies in a send queue.
			if rcvq < 4 || unsent == 0 {
				t.Fatalf("image: %d bytes in receive queues, %d unsent: the test did not fill the queues", rcvq, unsent)
			}
			if conns != 5 || c.NetLock == "" || !netlock.Exists(c.NetLock) {
				t.Fatalf("image: %d established connections, network lock %q (exists %v)", conns, c.NetLock, c.NetLock != "" && netlock.Exists(c.NetLock))
			}
			// A request sent while the server is down goes into the
			// lock (without it, the kernel would answer it with a reset).
			if _, err := paused.Write([]byte("7\n")); err != nil {
				t.Fatal(err)
			}
			time.Sleep(500 * time.Millisecond)
			tg.restore(dir)
			if netlock.Exists(c.NetLock) {
				t.Errorf("network lock %s still there after the restore", c.NetLock)
			}
			ss[3].hold.Store(false)
			waitBatches(t, ss, 30, 90*time.Second)
			// The listening socket accepts a new connection.
			more, stopMore := startStreams(t, addr, 1, 0)
			waitBatches(t, more, 2, 30*time.Second)
			tg.fire()
			testutil.WaitForFile(t, tg.out, "OK\n", 10*time.Second)
			// The requests that waited in the receive queue are answered.
			_ = paused.SetDeadline(time.Now().Add(30 * time.Second))
			r := bufio.NewReader(paused)
			for _, want := range []string{"5 35 ", "6 42 ", "7 49 "} {
				line, err := r.ReadString('\n')
				if err != nil || !strings.HasPrefix(line, want) {
					t.Fatalf("paused connection: reply %.20q, %v; want %q…", line, err, want)
				}
			}
			paused.Close()
			stop()
			stopMore()
			for _, s := range append(ss, more...) {
				s.c.Close()
			}
			if code := tg.wait(20 * time.Second); code != 0 {
				t.Fatalf("server exit %d, output:\n%s", code, tg.output())
			}
		})
	}
}

// TestTCPLeaveRunning dumps the server with --leave-running in the
// middle of the streams: they go on without an error, no network lock
// is left, no socket of the server is left in repair mode, and the
// server finds its options intact (SO_REUSEADDR too, which repair mode
// resets).
func TestTCPLeaveRunning(t *testing.T) {
	testutil.RequireRoot(t)
	requireNft(t)
	tg := start(t, testutil.BuildC(t, "tcpserver", false), "trigger", "tcp4")
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(serverPort(t, tg)))
	ss, stop := startStreams(t, addr, 4, 1)
	testutil.WaitForFile(t, tg.out, "ready\n", 10*time.Second)
	waitBatches(t, ss, 20, 30*time.Second)
	before := rtcrTables(t)
	tg.dump(true)
	if l := rtcrTables(t); len(l) > len(before) {
		t.Errorf("network lock tables left: %v (before the dump: %v)", l, before)
	}
	pidfd, err := unix.PidfdOpen(tg.pid, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pidfd)
	nums, err := procfs.ListFDs(tg.pid)
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, n := range nums {
		fd, err := unix.PidfdGetfd(pidfd, n, 0)
		if err != nil {
			t.Fatal(err)
		}
		if st, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL); err == nil && st == unix.IPPROTO_TCP {
			checked++
			if v, err := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_REPAIR); err != nil || v != 0 {
				t.Errorf("fd %d: TCP_REPAIR %d (%v) after the dump", n, v, err)
			}
		}
		unix.Close(fd)
	}
	if checked != 5 {
		t.Errorf("checked %d TCP sockets, want 5", checked)
	}
	waitBatches(t, ss, 30, 60*time.Second)
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

// TestUDPRoundTrip: a UDP socket bound to a port and connected to the
// test's socket echoes a datagram before and after dump, kill and
// restore, on the same port to the same peer (checked from inside, with
// SO_RCVBUF).
func TestUDPRoundTrip(t *testing.T) {
	testutil.RequireRoot(t)
	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	tg := start(t, testutil.BuildC(t, "tcpserver", false), "trigger", "udp", strconv.Itoa(peer.LocalAddr().(*net.UDPAddr).Port))
	srv := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: serverPort(t, tg)}
	testutil.WaitForFile(t, tg.out, "ready\n", 10*time.Second)
	echo := func(msg string) {
		t.Helper()
		buf := make([]byte, 100)
		for try := 0; try < 50; try++ {
			if _, err := peer.WriteToUDP([]byte(msg), srv); err != nil {
				t.Fatal(err)
			}
			_ = peer.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			n, _, err := peer.ReadFromUDP(buf)
			if err == nil && string(buf[:n]) == "echo:"+msg {
				return
			}
		}
		t.Fatalf("no echo of %q from %v", msg, srv)
	}
	echo("before")
	dir := tg.dump(false)
	tg.restore(dir)
	echo("after")
	tg.fire()
	if code := tg.wait(10 * time.Second); code != 0 || !strings.Contains(tg.output(), "OK\n") {
		t.Fatalf("exit %d, output:\n%s", code, tg.output())
	}
}

// TestInetRefused: a listening socket with a connection its program
// never accepts (refused once the dump has waited for it, new
// connections held back, for the bound of 5 s; the drain table is gone
// after), a connection in CLOSE_WAIT, a UDP socket with a datagram queued,
// and a socket of another network namespace are refused naming the fd
// and the reason (an option rtcr does not restore: TestSockOptsRefused);
// the server runs on, and no network lock is left.
func TestInetRefused(t *testing.T) {
	testutil.RequireRoot(t)
	requireNft(t)
	bin := testutil.BuildC(t, "tcpserver", false)
	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	pport := strconv.Itoa(peer.LocalAddr().(*net.UDPAddr).Port)
	tests := []struct {
		args  []string
		setup func(t *testing.T, port int)
		want  []string
	}{
		{[]string{"backlog"}, func(t *testing.T, port int) {
			c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
		}, []string{"fd 3 (", "LISTEN", "127.0.0.1:", "1 connections not accepted yet after 5s with new ones held back"}},
		{[]string{"closewait"}, func(t *testing.T, port int) {
			c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
			if err != nil {
				t.Fatal(err)
			}
			c.Close()
		}, []string{"fd 4 (", "CLOSE_WAIT"}},
		{[]string{"udpqueued", pport}, func(t *testing.T, port int) {
			if _, err := peer.WriteToUDP([]byte("queued"), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}); err != nil {
				t.Fatal(err)
			}
		}, []string{"fd 5 (", "datagrams queued"}}, // fds 3 and 4: unconnected TCP sockets
		{[]string{"netns"}, nil, []string{"fd 4 (", "network namespace"}},
	}
	for _, tc := range tests {
		t.Run(tc.args[0], func(t *testing.T) {
			tg := start(t, bin, append([]string{"trigger"}, tc.args...)...)
			if tc.setup != nil {
				tc.setup(t, serverPort(t, tg))
			}
			testutil.WaitForFile(t, tg.out, "ready\n", 10*time.Second)
			if tc.args[0] == "udpqueued" {
				time.Sleep(100 * time.Millisecond) // the datagram arrives
			}
			before := rtcrTables(t)
			tg.dumpRefused(tc.want...)
			if l := rtcrTables(t); len(l) > len(before) {
				t.Errorf("network lock tables left after a refused dump: %v (before: %v)", l, before)
			}
			tg.runsOnOK()
		})
	}
}
