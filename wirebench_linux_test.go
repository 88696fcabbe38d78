package rtcr_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rtcr/rtcr"
	"github.com/rtcr/rtcr/internal/testutil"
	"github.com/rtcr/rtcr/internal/wire"
)

// TestWireThroughput measures the transfer of a real image from namespace
// b to namespace a (netPair) against a bare TCP copy of the same files
// between the same namespaces, in the same run, best of 3 each: the
// image's files go through rtcr's transport (handshake, AES-256-GCM
// frames, then again with IntegrityOnly frames; each file written
// atomically and fsynced) into a directory in
// /dev/shm, and through a plain TCP stream (sendfile) into files in
// /dev/shm, written and fsynced the same way, and into nothing. A
// measurement, not a check: set RTCR_WIRE_BENCH=1 (and RTCR_WIRE_BENCH_MIB,
// default 1024; RTCR_WIRE_BENCH_RUNS, default 3; RTCR_WIRE_BENCH_ONLY, a
// comma-separated list of wire, wire-mac, tcp-files, tcp-splice,
// tcp-discard, runs only those; RTCR_WIRE_BENCH_IMG, a directory where the
// image is made once and kept for later runs) to run it.
func TestWireThroughput(t *testing.T) {
	testutil.RequireRoot(t)
	if os.Getenv("RTCR_WIRE_BENCH") == "" {
		t.Skip("a measurement: RTCR_WIRE_BENCH=1 runs it")
	}
	mib := 1024
	if s := os.Getenv("RTCR_WIRE_BENCH_MIB"); s != "" {
		mib, _ = strconv.Atoi(s)
	}
	runs := 3
	if s := os.Getenv("RTCR_WIRE_BENCH_RUNS"); s != "" {
		runs, _ = strconv.Atoi(s)
	}
	np := newNetPair(t)
	img := os.Getenv("RTCR_WIRE_BENCH_IMG") // kept between runs when set
	if img == "" {
		img = filepath.Join(t.TempDir(), "img")
	}
	if _, err := os.Stat(filepath.Join(img, "manifest.img")); err != nil {
		tg := testutil.StartTarget(t, testutil.BuildC(t, "memwriter", false), "1\n", strconv.Itoa(mib), "10")
		if _, err := rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: tg.Pid, Dir: img, LeaveRunning: true}); err != nil {
			t.Fatal(err)
		}
		_ = tg.Cmd.Process.Kill()
	}
	names, err := wire.ImageFiles(img)
	if err != nil {
		t.Fatal(err)
	}
	var size int64
	for _, n := range names {
		fi, err := os.Stat(filepath.Join(img, n))
		if err != nil {
			t.Fatal(err)
		}
		size += fi.Size()
	}
	tok := wire.Token("0123456789abcdef0123456789abcdef")
	var best, cpu [5]time.Duration
	for run := 0; run < runs; run++ {
		for i, how := range []string{"wire", "wire-mac", "tcp-files", "tcp-splice", "tcp-discard"} {
			if only := os.Getenv("RTCR_WIRE_BENCH_ONLY"); only != "" && !strings.Contains(","+only+",", ","+how+",") {
				continue
			}
			c0 := cpuTime(t)
			d := transferOnce(t, np, how, img, names, tok)
			c := cpuTime(t) - c0
			if best[i] == 0 || d < best[i] {
				best[i] = d
			}
			if cpu[i] == 0 || c < cpu[i] {
				cpu[i] = c
			}
		}
	}
	out := shmDir(t)
	if err := np.pair(func(ln net.Listener) error {
		nc, err := ln.Accept()
		if err != nil {
			return err
		}
		c, err := wire.Server(nc, tok)
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.ReceiveImage(out)
		return err
	}, func(nc net.Conn) error {
		c, err := wire.Client(nc, tok)
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.SendImage(img)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := rtcr.CheckImage(out); err != nil {
		t.Fatal(err)
	}
	check := time.Since(start)
	// ratio: the throughput over the bare read/write copy's; cpu: the
	// CPU time of both ends (this process's user and system time), least
	// of the runs, a measure a loaded machine disturbs less.
	rate := func(i int) string {
		return fmt.Sprintf("%v (%.0f MiB/s, ratio %.2f, cpu %v)", best[i].Round(time.Millisecond), float64(size)/(1<<20)/best[i].Seconds(), best[2].Seconds()/best[i].Seconds(), cpu[i].Round(time.Millisecond))
	}
	t.Logf("%.0f MiB image, best of %d: wire %s; wire integrity-only %s; bare TCP read/write into files %s; bare TCP sendfile/splice into files %s; bare TCP into nothing %s; CheckImage %v",
		float64(size)/(1<<20), runs, rate(0), rate(1), rate(2), rate(3), rate(4), check.Round(time.Millisecond))
}

// pair runs server on a listener made in namespace a and client on a
// connection to it made in namespace b, and returns the first error.
func (n *netPair) pair(server func(net.Listener) error, client func(net.Conn) error) error {
	var ln net.Listener
	if err := n.inNetns(n.a, func() (err error) {
		ln, err = net.Listen("tcp", n.addrA+":0")
		return err
	}); err != nil {
		return err
	}
	defer ln.Close()
	var nc net.Conn
	if err := n.inNetns(n.b, func() (err error) {
		nc, err = net.Dial("tcp", ln.Addr().String())
		return err
	}); err != nil {
		return err
	}
	defer nc.Close()
	ch := make(chan error, 1)
	go func() { ch <- server(ln) }()
	cerr := client(nc)
	serr := <-ch
	if cerr != nil {
		return cerr
	}
	return serr
}

// transferOnce moves the image's files once, as how says, and returns the
// time from the connection's first byte to the last file written.
func transferOnce(t *testing.T, np *netPair, how, img string, names []string, tok wire.Token) time.Duration {
	t.Helper()
	out := shmDir(t)
	defer os.RemoveAll(out) // at most one copy in memory at a time
	start := time.Now()     // the listen and dial in the namespaces count too: the same for all
	err := np.pair(func(ln net.Listener) error {
		nc, err := ln.Accept()
		if err != nil {
			return err
		}
		defer nc.Close()
		switch how {
		case "wire", "wire-mac":
			c, err := wire.ServerWith(nc, tok, protection(how))
			if err != nil {
				return err
			}
			if _, err := c.ReceiveImage(out); err != nil {
				return err
			}
		case "tcp-files", "tcp-splice":
			buf := make([]byte, wire.MaxPayload)
			for _, n := range names {
				fi, err := os.Stat(filepath.Join(img, n))
				if err != nil {
					return err
				}
				f, err := os.OpenFile(filepath.Join(out, n), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
				if err != nil {
					return err
				}
				var err2 error
				if how == "tcp-splice" {
					_, err2 = io.CopyN(f, nc, fi.Size()) // splice(2): no copy in user space
				} else {
					_, err2 = io.CopyBuffer(onlyWriter{f}, io.LimitReader(nc, fi.Size()), buf)
				}
				if err := err2; err != nil {
					f.Close()
					return err
				}
				if err := f.Sync(); err != nil {
					f.Close()
					return err
				}
				f.Close()
			}
		case "tcp-discard":
			buf := make([]byte, wire.MaxPayload)
			for {
				_, err := nc.Read(buf)
				if err == io.EOF {
					break
				}
				if err != nil {
					return err
				}
			}
		}
		return nil
	}, func(nc net.Conn) error {
		if how == "wire" || how == "wire-mac" {
			c, err := wire.ClientWith(nc, tok, protection(how))
			if err != nil {
				return err
			}
			_, err = c.SendImage(img)
			return err
		}
		buf := make([]byte, wire.MaxPayload)
		for _, n := range names {
			f, err := os.Open(filepath.Join(img, n))
			if err != nil {
				return err
			}
			if how == "tcp-splice" {
				_, err = io.Copy(nc, f) // sendfile(2)
			} else {
				_, err = io.CopyBuffer(onlyWriter{nc}, onlyReader{f}, buf)
			}
			f.Close()
			if err != nil {
				return err
			}
		}
		return nc.(*net.TCPConn).CloseWrite()
	})
	took := time.Since(start)
	if err != nil {
		t.Fatalf("%s: %v", how, err)
	}
	return took
}

// cpuTime is the user and system time this process used so far.
func cpuTime(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// protection is the wire's protection for a way of transferOnce.
func protection(how string) wire.Protection {
	if how == "wire-mac" {
		return wire.IntegrityOnly
	}
	return wire.Encrypted
}

// onlyWriter and onlyReader hide ReadFrom and WriteTo, so that io.CopyBuffer
// copies through its buffer with read(2) and write(2), as the wire does.
type onlyWriter struct{ io.Writer }

type onlyReader struct{ io.Reader }
