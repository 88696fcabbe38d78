package rtcr

import (
	"errors"
	"fmt"
	"sync"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/lazy"
	"github.com/rtcr/rtcr/internal/wire"
)

// remoteSource is the lazy.Source of a post-copy migration's destination:
// each Fetch asks the frozen source for its pages over the migration
// connection (a PageRequest) and waits for them (PageData). Requests go
// out once the page phase started (run); a dropped link fails every Fetch waiting and every one after, for good
// (the lazy restore then kills the copy).
//
// The wire.Conn is shared: sends are serialized by sendMu, and one
// goroutine (run) receives; a Conn's send and receive sides touch
// disjoint state.
type remoteSource struct {
	c       *wire.Conn
	set     *wire.PageSet
	started chan struct{}
	start   sync.Once
	sendMu  sync.Mutex

	mu      sync.Mutex
	next    uint32
	waiting map[uint32]*fetch
	err     error // final: set once
	over    bool  // every page is in (phaseOver)
	gone    bool  // after over, the source said Go; read after ran is closed
	ran     chan struct{}
}

// fetch is one Fetch waiting for its pages.
type fetch struct {
	pid  int
	addr uint64
	buf  []byte
	got  int
	done chan error
}

var _ lazy.Source = (*remoteSource)(nil)

func newRemoteSource(c *wire.Conn, set *wire.PageSet) *remoteSource {
	return &remoteSource{c: c, set: set, started: make(chan struct{}), ran: make(chan struct{}), waiting: map[uint32]*fetch{}}
}

// errPhaseOver fails the Fetches of a page phase that ended.
var errPhaseOver = errors.New("the page phase is over")

// Fetch implements lazy.Source.
func (s *remoteSource) Fetch(pid int, addr uint64, buf []byte) error {
	n := len(buf) / image.PageSize
	if len(buf)%image.PageSize != 0 || n < 1 || n > wire.MaxRequestPages || !s.set.Contains(pid, addr, n) {
		return fmt.Errorf("fetch %d bytes at %#x of pid %d: not pages the image left with the source", len(buf), addr, pid)
	}
	<-s.started
	f := &fetch{pid: pid, addr: addr, buf: buf, done: make(chan error, 1)}
	s.mu.Lock()
	if s.err != nil {
		err := s.err
		s.mu.Unlock()
		return err
	}
	id := s.next
	s.next++
	s.waiting[id] = f
	s.mu.Unlock()
	s.sendMu.Lock()
	err := s.c.SendNow(wire.PageRequest, wire.EncodePageRequest(wire.PageReq{ID: id, Pid: pid, Addr: addr, Count: n}))
	s.sendMu.Unlock()
	if err != nil {
		s.fail(fmt.Errorf("the link to the source dropped: %w", err))
	}
	return <-f.done
}

// send sends one frame of the serve side (Restored, PagesIn) between the
// Fetches' requests.
func (s *remoteSource) send(t wire.Type, p []byte) error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	return s.c.SendNow(t, p)
}

// run receives the source's PageData frames until the connection ends
// or, once the page phase is over (phaseOver), the source says Go (its
// tree is dead: gone); it starts the page phase.
func (s *remoteSource) run() {
	defer close(s.ran)
	s.begin()
	for {
		t, p, err := s.c.Recv()
		if err != nil {
			s.fail(fmt.Errorf("the link to the source dropped: %w", err))
			return
		}
		s.mu.Lock()
		over := s.over
		s.mu.Unlock()
		if t == wire.Go && over {
			s.gone = true
			return
		}

		if t != wire.PageData {
			s.fail(fmt.Errorf("page phase: got %v from %s: %w", t, s.c.Peer(), wire.ErrProtocol))
			return
		}
		if err := s.deliver(p); err != nil {
			s.fail(err)
			return
		}
	}
}

// deliver copies one PageData frame into the Fetch that asked for it:
// exactly the pages next in its buffer, or a protocol violation.
func (s *remoteSource) deliver(p []byte) error {
	id, pid, addr, data, err := wire.ParsePageData(p)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.waiting[id]
	if f == nil || f.pid != pid || addr != f.addr+uint64(f.got) || len(data) > len(f.buf)-f.got {
		return fmt.Errorf("page data %d from %s: %d bytes of pid %d at %#x were not asked for: %w", id, s.c.Peer(), len(data), pid, addr, wire.ErrProtocol)
	}
	f.got += copy(f.buf[f.got:], data)
	if f.got == len(f.buf) {
		delete(s.waiting, id)
		f.done <- nil
	}
	return nil
}

// phaseOver marks every page in: the next frame run reads should be the
// source's Go.
func (s *remoteSource) phaseOver() {
	s.mu.Lock()
	s.over = true
	s.mu.Unlock()
}

// begin lets the Fetches send their requests.
func (s *remoteSource) begin() { s.start.Do(func() { close(s.started) }) }

// fail ends the page phase with err: every Fetch waiting and every later
// one fails with it, and the connection is closed.
func (s *remoteSource) fail(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	for id, f := range s.waiting {
		f.done <- s.err
		delete(s.waiting, id)
	}
	s.mu.Unlock()
	s.c.Close()
	s.begin() // a Fetch waiting for the start sees err
}
