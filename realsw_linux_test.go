package rtcr_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rtcr/rtcr/internal/testutil"
)

// freePort returns a loopback TCP port nothing listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// dialUntil connects to addr, retrying until deadline (the server is
// still starting).
func dialUntil(t *testing.T, addr string, timeout time.Duration) net.Conn {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err == nil {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("connect to %s: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// resp is a minimal Redis protocol client on one connection.
type resp struct {
	c net.Conn
	r *bufio.Reader
}

func newResp(c net.Conn) *resp { return &resp{c: c, r: bufio.NewReader(c)} }

// send writes one command without waiting for its reply.
func (p *resp) send(args ...string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	_, err := io.WriteString(p.c, b.String())
	return err
}

// reply reads one reply: a status, an integer or a bulk string (nil bulk
// as "(nil)"); an error reply is returned as an error.
func (p *resp) reply() (string, error) {
	_ = p.c.SetReadDeadline(time.Now().Add(60 * time.Second))
	line, err := p.r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return "", fmt.Errorf("empty reply line")
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return "", fmt.Errorf("redis error: %s", line[1:])
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return "", fmt.Errorf("bad bulk length %q", line)
		}
		if n < 0 {
			return "(nil)", nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(p.r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}
	return "", fmt.Errorf("unexpected reply %q", line)
}

// do sends one command and reads its reply.
func (p *resp) do(args ...string) (string, error) {
	if err := p.send(args...); err != nil {
		return "", err
	}
	return p.reply()
}

// TestRedis checkpoints redis-server (Debian's package) holding keys and
// two client connections over loopback TCP, kills it, restores it, and
// uses the same client connections again: every key is there and the
// clients never see their connection reset.
func TestRedis(t *testing.T) {
	testutil.RequireRoot(t)
	server, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server is not installed (.ci/run installs it)")
	}
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	tg := start(t, server, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--daemonize", "no")
	busy := newResp(dialUntil(t, addr, 30*time.Second))
	defer busy.c.Close()
	idle := newResp(dialUntil(t, addr, 30*time.Second))
	defer idle.c.Close()
	if got, err := idle.do("PING"); err != nil || got != "PONG" {
		t.Fatalf("PING: %q, %v", got, err)
	}

	const keys = 2000
	value := func(i int) string { return fmt.Sprintf("value-%d-%s", i, strings.Repeat("x", i%97)) }
	for i := 0; i < keys; i++ {
		if err := busy.send("SET", fmt.Sprintf("key:%d", i), value(i)); err != nil {
			t.Fatalf("SET key:%d: %v", i, err)
		}
	}
	for i := 0; i < keys; i++ {
		if got, err := busy.reply(); err != nil || got != "OK" {
			t.Fatalf("SET reply %d: %q, %v", i, got, err)
		}
	}
	// A request in flight across the checkpoint: sent before the dump,
	// its reply read after the restore.
	if err := busy.send("INCR", "counter"); err != nil {
		t.Fatal(err)
	}

	dir := tg.dump(false)
	tg.restore(dir)

	if got, err := busy.reply(); err != nil || got != "1" {
		t.Fatalf("INCR sent before the dump: %q, %v", got, err)
	}
	for i := 0; i < keys; i++ {
		if err := busy.send("GET", fmt.Sprintf("key:%d", i)); err != nil {
			t.Fatalf("GET key:%d after restore: %v", i, err)
		}
	}
	for i := 0; i < keys; i++ {
		if got, err := busy.reply(); err != nil || got != value(i) {
			t.Fatalf("GET key:%d after restore: %q, %v", i, got, err)
		}
	}
	if got, err := idle.do("DBSIZE"); err != nil || got != strconv.Itoa(keys+1) {
		t.Fatalf("DBSIZE on the idle connection after restore: %q, %v; want %d", got, err, keys+1)
	}
	fresh := newResp(dialUntil(t, addr, 30*time.Second))
	defer fresh.c.Close()
	if got, err := fresh.do("INCR", "counter"); err != nil || got != "2" {
		t.Fatalf("INCR on a new connection after restore: %q, %v", got, err)
	}
}

// TestPythonHTTPServer checkpoints `python3 -m http.server` while a client
// outside the tree keeps polling it, kills it, restores it, and checks
// every poll was answered with the file's contents: polls made while the
// server was down wait (the network lock) instead of failing.
func TestPythonHTTPServer(t *testing.T) {
	testutil.RequireRoot(t)
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 is not installed")
	}
	port := freePort(t)
	www := t.TempDir()
	body := "hello from the checkpointed server\n"
	if err := os.WriteFile(filepath.Join(www, "index.txt"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	tg := start(t, python, "-u", "-m", "http.server", "--bind", "127.0.0.1", "--directory", www, strconv.Itoa(port))
	url := fmt.Sprintf("http://127.0.0.1:%d/index.txt", port)
	client := &http.Client{Timeout: 60 * time.Second}
	get := func() error {
		resp, err := client.Get(url)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if resp.StatusCode != 200 || string(b) != body {
			return fmt.Errorf("status %d, body %q", resp.StatusCode, b)
		}
		return nil
	}
	deadline := time.Now().Add(30 * time.Second)
	for get() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("http.server did not answer; output:\n%s", tg.output())
		}
		time.Sleep(50 * time.Millisecond)
	}

	var (
		mu     sync.Mutex
		polls  int
		failed []error
		stop   = make(chan struct{})
		done   = make(chan struct{})
	)
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			err := get()
			mu.Lock()
			polls++
			if err != nil {
				failed = append(failed, err)
			}
			mu.Unlock()
			time.Sleep(10 * time.Millisecond)
		}
	}()
	waitPolls := func(n int) {
		deadline := time.Now().Add(60 * time.Second)
		for {
			mu.Lock()
			p := polls
			mu.Unlock()
			if p >= n || time.Now().After(deadline) {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitPolls(10)
	dir := tg.dump(false)
	tg.restore(dir)
	mu.Lock()
	after := polls
	mu.Unlock()
	waitPolls(after + 20)
	close(stop)
	<-done
	mu.Lock()
	defer mu.Unlock()
	if polls < after+20 {
		t.Errorf("only %d polls answered after the restore, want 20", polls-after)
	}
	for _, err := range failed {
		t.Errorf("a poll failed: %v", err)
	}
	t.Logf("%d polls, %d before the restore", polls, after)
}
