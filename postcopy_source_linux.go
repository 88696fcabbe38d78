package rtcr

import (
	"fmt"
	"os"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/wire"
	"golang.org/x/sys/unix"
)

// pageServer is the source side of a post-copy migration's page phase:
// it answers the destination's PageRequests with the memory of the frozen
// processes until the destination says every page is in. Requests of a
// fault (small) are answered before the rest of a prefetch (large), one
// PageData frame at a time.
type pageServer struct {
	c     *wire.Conn
	set   *wire.PageSet
	hosts map[int]int // image pid -> host pid
	mems  map[int]*os.File
	buf   []byte
	// restored takes the destination's Restored frame (its copy runs).
	restored func(p []byte) error
	// Sent counts the pages sent (a page asked twice counts twice).
	Sent int64
}

// urgentPages is the largest request answered as a fault's.
const urgentPages = 64

// maxPending bounds the requests waiting for an answer: a destination has
// one prefetch and its faulting threads' requests out per userfaultfd.
const maxPending = 4096

// pending is a request being answered.
type pending struct {
	wire.PageReq
	done int // pages sent so far
}

// serve runs the page phase; it returns nil once the destination sent
// PagesIn, and an error when the link drops or the peer breaks the
// protocol (the caller then releases the frozen tree: it runs on).
func (s *pageServer) serve() error {
	defer func() {
		for _, f := range s.mems {
			f.Close()
		}
	}()
	s.buf = make([]byte, 0, 16+wire.MaxDataPages*image.PageSize)
	s.mems = map[int]*os.File{}
	reqs := make(chan wire.PageReq, 256)
	in := make(chan error, 1)
	go func() { in <- s.receive(reqs) }()
	// On a return before receive ended (a send failed, a peer asking
	// too much), the link is closed and receive waited for: its
	// restored callback writes what the caller reads next.
	received := false
	defer func() {
		if !received {
			s.c.Close()
			for range reqs {
			}
			<-in
		}
	}()
	var urgent, bulk []pending
	for {
		// Take every request that has arrived; wait for one only when
		// nothing is left to send.
		for {
			var r wire.PageReq
			var ok bool
			if len(urgent)+len(bulk) == 0 {
				select {
				case r, ok = <-reqs:
				case err := <-in:
					received = true
					return err
				}
			} else {
				select {
				case r, ok = <-reqs:
				default:
				}
				if !ok {
					break
				}
			}
			if !ok {
				received = true
				return <-in
			}
			if len(urgent)+len(bulk) >= maxPending {
				return fmt.Errorf("page requests from %s: more than %d waiting: %w", s.c.Peer(), maxPending, wire.ErrProtocol)
			}
			if r.Count <= urgentPages {
				urgent = append(urgent, pending{PageReq: r})
			} else {
				bulk = append(bulk, pending{PageReq: r})
			}
		}
		q := &bulk
		if len(urgent) > 0 {
			q = &urgent
		}
		p := &(*q)[0]
		if err := s.sendFrame(p); err != nil {
			return err
		}
		if p.done == p.Count {
			*q = (*q)[1:]
		}
	}
}

// receive reads the destination's frames: PageRequests (checked against
// the image's pages) go to reqs; PagesIn ends the phase (nil). It closes
// reqs when it returns.
func (s *pageServer) receive(reqs chan<- wire.PageReq) error {
	defer close(reqs)
	for {
		t, p, err := s.c.Recv()
		if err != nil {
			return err
		}
		switch t {
		case wire.PagesIn:
			return nil
		case wire.Restored:
			if err := s.restored(p); err != nil {
				return err
			}
			continue
		case wire.PageRequest:
		default:
			return fmt.Errorf("page phase: got %v from %s: %w", t, s.c.Peer(), wire.ErrProtocol)
		}
		r, err := wire.ParsePageRequest(p)
		if err != nil {
			return err
		}
		if !s.set.Contains(r.Pid, r.Addr, r.Count) {
			return fmt.Errorf("page request %d from %s: %d pages of pid %d at %#x are not pages the image left out: %w", r.ID, s.c.Peer(), r.Count, r.Pid, r.Addr, wire.ErrProtocol)
		}
		reqs <- r
	}
}

// sendFrame sends the next PageData frame of p.
func (s *pageServer) sendFrame(p *pending) error {
	n := min(p.Count-p.done, wire.MaxDataPages)
	addr := p.Addr + uint64(p.done)*image.PageSize
	b := wire.AppendPageDataHeader(s.buf[:0], p.ID, p.Pid, addr)
	data := b[len(b) : len(b)+n*image.PageSize]
	if err := s.read(p.Pid, addr, data); err != nil {
		return err
	}
	if err := s.c.SendNow(wire.PageData, b[:len(b)+len(data)]); err != nil {
		return err
	}
	p.done += n
	s.Sent += int64(n)
	return nil
}

// read reads len(b) bytes at addr of image process pid: one
// process_vm_readv, or /proc/PID/mem where that fails (PROT_NONE pages).
func (s *pageServer) read(pid int, addr uint64, b []byte) error {
	host, ok := s.hosts[pid]
	if !ok {
		return fmt.Errorf("page phase: no host process for image pid %d", pid)
	}
	local := []unix.Iovec{{Base: &b[0]}}
	local[0].SetLen(len(b))
	remote := []unix.RemoteIovec{{Base: uintptr(addr), Len: len(b)}}
	if n, err := unix.ProcessVMReadv(host, local, remote, 0); err == nil && n == len(b) {
		return nil
	}
	f := s.mems[host]
	if f == nil {
		var err error
		if f, err = os.Open(fmt.Sprintf("/proc/%d/mem", host)); err != nil {
			return fmt.Errorf("read memory of %d: %w", host, err)
		}
		s.mems[host] = f
	}
	if _, err := f.ReadAt(b, int64(addr)); err != nil {
		return fmt.Errorf("read %d bytes at %#x of %d: %w", len(b), addr, host, err)
	}
	return nil
}
