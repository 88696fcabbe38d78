package rtcr

import (
	"bytes"
	"errors"
	"net"
	"os"
	"testing"
	"time"
	"unsafe"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/wire"
	"golang.org/x/sys/unix"
)

// pagePair connects a remoteSource (the destination) to a pageServer (the
// source) serving this process's own memory as image pid 1, with the
// Remote span [start, start+n pages).
func pagePair(t *testing.T, start uint64, n uint64) (*remoteSource, *pageServer, chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	b, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	a, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	tok := wire.Token("0123456789abcdef0123456789abcdef")
	type res struct {
		c   *wire.Conn
		err error
	}
	srvc := make(chan res, 1)
	go func() { c, err := wire.Server(a, tok); srvc <- res{c, err} }()
	dst, err := wire.Client(b, tok)
	if err != nil {
		t.Fatal(err)
	}
	r := <-srvc
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Cleanup(func() { dst.Close(); r.c.Close() })
	dst.SetIdle(time.Minute) // as connect does
	_ = r.c.SetDeadline(time.Time{})
	ck := &image.Checkpoint{Processes: []image.Process{{Pid: 1, VMAs: []image.VMA{
		{Start: start, End: start + n*image.PageSize, Remote: []image.PageSpan{{Addr: start, Count: n}}},
	}}}}
	set := wire.NewPageSet(ck)
	ps := &pageServer{c: dst, set: set, hosts: map[int]int{1: os.Getpid()}, restored: func([]byte) error { return nil }}
	done := make(chan error, 1)
	go func() { done <- ps.serve() }()
	src := newRemoteSource(r.c, set)
	go src.run()
	return src, ps, done
}

// TestPostCopyPages: the destination's Fetch gets the source's memory, a
// fault's and a prefetch's alike; PagesIn ends the source's page phase
// with nil; a request for pages the image did not leave out ends it with
// a protocol violation and fails the destination's Fetches for good.
func TestPostCopyPages(t *testing.T) {
	const n = 600
	mem, err := unix.Mmap(-1, 0, n*image.PageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	for i := range mem {
		mem[i] = byte(i*7 + i/image.PageSize)
	}
	start := uint64(uintptr(unsafe.Pointer(&mem[0])))

	src, ps, done := pagePair(t, start, n)
	big := make([]byte, wire.MaxRequestPages*image.PageSize) // a prefetch: 4 frames
	small := make([]byte, 16*image.PageSize)                 // a fault
	bigErr := make(chan error, 1)
	go func() { bigErr <- src.Fetch(1, start, big) }()
	if err := src.Fetch(1, start+(n-16)*image.PageSize, small); err != nil {
		select {
		case e := <-done:
			t.Fatalf("%v; source: %v", err, e)
		default:
		}
		t.Fatal(err)
	}
	if err := <-bigErr; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(big, mem[:len(big)]) || !bytes.Equal(small, mem[(n-16)*image.PageSize:]) {
		t.Error("fetched pages differ from the source's memory")
	}
	if err := src.Fetch(1, start+(n-1)*image.PageSize, make([]byte, 2*image.PageSize)); err == nil {
		t.Error("a fetch beyond the span was sent")
	}
	src.phaseOver()
	if err := src.send(wire.PagesIn, nil); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Errorf("source's page phase after PagesIn: %v", err)
	}
	if ps.Sent != wire.MaxRequestPages+16 {
		t.Errorf("sent %d pages, want %d", ps.Sent, wire.MaxRequestPages+16)
	}

	// A destination asking for pages the image did not leave out.
	src, ps, done = pagePair(t, start, n/2)
	if err := src.send(wire.PageRequest, wire.EncodePageRequest(wire.PageReq{ID: 1, Pid: 1, Addr: start + (n/2)*image.PageSize, Count: 1})); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, wire.ErrProtocol) {
		t.Errorf("source after a request outside the image: %v, want a protocol violation", err)
	}
	ps.c.Close() // as MigrateLazy does when its handoff fails
	if err := src.Fetch(1, start, make([]byte, image.PageSize)); err == nil {
		t.Error("a fetch succeeded after the source gave up")
	}
}
