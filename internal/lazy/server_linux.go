package lazy

import (
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/rtcr/rtcr/internal/abi"
	"golang.org/x/sys/unix"
)

const pageSize = 4096

// faultChunk is how much a fault brings in at once (aligned, within its
// run): the page touched and its neighbours, likely touched next.
const faultChunk = 64 << 10

// Range is a range of addresses [Start, End), page aligned.
type Range struct{ Start, End uint64 }

// Proc is one restored process to serve.
type Proc struct {
	// Pid is the process's pid in the image (what Source.Fetch is asked
	// for); Fd rtcr's copy of its userfaultfd (Create), every lazy range
	// registered (Register).
	Pid, Fd int
	// Runs are the saved pages left out, sorted and disjoint, at their
	// image addresses (where the restore mapped them).
	Runs []Range
}

// seg is a range of pages still missing: [start, end) in the process
// now, whose contents are the image's at img.
type seg struct{ start, end, img uint64 }

// ctx is one userfaultfd: a restored process, or a child it forked while
// pages were missing (its own userfaultfd, from the fork event).
type ctx struct {
	s   *Server
	id  int // its index in Server.ctxs
	pid int // the image process whose memory it holds
	fd  int
	mu  sync.Mutex
	// segs are the pages still to bring in, sorted, disjoint; gen counts
	// the events read (each may move or drop pages): a copy is made only
	// if no event came since its pages were looked up.
	segs []seg
	gen  uint64
	gone bool // the address space is gone (the process exited)
	done bool // counted as done in Server.left
}

// Server serves the missing pages of a lazy restore (see the package
// comment). Faults are served by one goroutine per userfaultfd, which also
// reads its events; one prefetcher per userfaultfd copies the rest in
// address order. Events are read, and pages copied, under the ctx's lock
// and with its generation checked, so that a copy never lands on memory an
// event has dropped or moved since its pages were looked up (the kernel
// refuses copies, EAGAIN, while an event is queued and not read).
type Server struct {
	src  Source
	log  *slog.Logger
	stop [2]int // a pipe: closing stop[1] wakes every poll

	pages, in, faults, fetched, early atomic.Int64
	released                          atomic.Bool // Releasing was called

	mu      sync.Mutex
	ctxs    []*ctx
	left    int // ctxs with pages still missing
	err     error
	allIn   chan struct{}
	inOnce  sync.Once     // closes allIn
	run     chan struct{} // closed by Prefetch
	quit    chan struct{} // closed by Close
	once    sync.Once
	closed  bool
	wg      sync.WaitGroup // every goroutine
	serving sync.WaitGroup // the fault goroutines
	// forks are the fork events read and not yet taken (TakeForks);
	// forked has a token while there are some.
	forks  []Fork
	forked chan struct{}
}

// NewServer returns a server fetching pages from src; log may be nil.
func NewServer(src Source, log *slog.Logger) (*Server, error) {
	s := &Server{src: src, log: log, allIn: make(chan struct{}), run: make(chan struct{}), quit: make(chan struct{}), forked: make(chan struct{}, 1)}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if err := unix.Pipe2(s.stop[:], unix.O_CLOEXEC); err != nil {
		return nil, fmt.Errorf("lazy restore: pipe: %w", err)
	}
	return s, nil
}

// Releasing tells the server that the processes are about to be let go:
// faults read from now on are not counted as Early. It must come before
// the first detach, not with Prefetch after the last one: a process runs
// from its own detach on, and on a busy machine it faults before the
// restore gets to Prefetch (such faults were counted as the restore's).
func (s *Server) Releasing() { s.released.Store(true) }

// Prefetch lets the background copy begin (Add serves faults at once):
// called when the processes run, so that it does not slow down the rest
// of the restore (the copies take the target's mmap lock and a CPU).
// With nothing missing (no process had lazy memory) every page is in.
func (s *Server) Prefetch() {
	s.once.Do(func() { close(s.run) })
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.left == 0 {
		s.inOnce.Do(func() { close(s.allIn) })
	}
}

// Add starts serving p: its faults at once, its background copy once
// Prefetch is called. It returns the id of p's userfaultfd (what a Fork
// names its parent by).
func (s *Server) Add(p Proc) int {
	c := &ctx{s: s, pid: p.Pid, fd: p.Fd}
	for _, r := range p.Runs {
		c.segs = append(c.segs, seg{r.Start, r.End, r.Start})
	}
	s.start(c)
	return c.id
}

func (s *Server) start(c *ctx) {
	n := int64(0)
	for _, g := range c.segs {
		n += int64(g.end-g.start) / pageSize
	}
	s.pages.Add(n)
	s.mu.Lock()
	c.id = len(s.ctxs)
	s.ctxs = append(s.ctxs, c)
	if len(c.segs) > 0 {
		s.left++
	} else {
		c.done = true
	}
	s.mu.Unlock()
	s.wg.Add(2)
	s.serving.Add(1)
	go c.serve()
	go c.prefetch()
}

// Progress reports how far the restore is.
func (s *Server) Progress() Progress {
	return Progress{Pages: s.pages.Load(), In: s.in.Load(), Faults: s.faults.Load(), Fetched: s.fetched.Load(), Early: s.early.Load()}
}

// AllIn is closed once every page is in (or Fail was called).
func (s *Server) AllIn() <-chan struct{} { return s.allIn }

// Err returns the error that stopped the server, nil if none.
func (s *Server) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Wait waits until every page is in, or the first error.
func (s *Server) Wait() error {
	<-s.allIn
	return s.Err()
}

// Fail stops bringing pages in: Wait returns err.
func (s *Server) Fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = err
		s.left = 0
		s.inOnce.Do(func() { close(s.allIn) })
	}
}

// Close stops the goroutines and closes every userfaultfd: the kernel
// unregisters the ranges, and a page still missing would read as zero
// from then on, so the caller closes only once all are in or the
// processes are dead.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.mu.Unlock()
	close(s.quit)
	unix.Close(s.stop[1])
	s.wg.Wait()
	for _, c := range s.ctxs {
		unix.Close(c.fd)
	}
	unix.Close(s.stop[0])
}

// CloseFaultFds stops serving faults and closes every userfaultfd without
// waiting for the background copy (whose Fetch may never return): what a
// killed rtcr's exit does to the restored processes, for a test. Nothing
// of s may be used after it but Wait, which may then never return.
func (s *Server) CloseFaultFds() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	unix.Close(s.stop[1])
	s.serving.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.ctxs {
		unix.Close(c.fd)
	}
}

// settled records that [start, end) of c is in (or no longer wanted):
// it leaves c.segs. Called with c.mu held.
func (c *ctx) settled(start, end uint64) {
	var out []seg
	var n uint64
	for _, g := range c.segs {
		if g.end <= start || g.start >= end {
			out = append(out, g)
			continue
		}
		a, b := max(g.start, start), min(g.end, end)
		n += (b - a) / pageSize
		if g.start < a {
			out = append(out, seg{g.start, a, g.img})
		}
		if b < g.end {
			out = append(out, seg{b, g.end, g.img + (b - g.start)})
		}
	}
	c.segs = out
	c.s.in.Add(int64(n))
	c.checkDone()
}

// checkDone counts c as done once nothing is missing. c.mu held.
func (c *ctx) checkDone() {
	if len(c.segs) > 0 || c.done {
		return
	}
	c.done = true
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.left > 0 {
		s.left--
		if s.left == 0 && s.running() {
			s.inOnce.Do(func() { close(s.allIn) })
		}
	}
}

// find returns the segment holding addr. c.mu held.
func (c *ctx) find(addr uint64) (seg, bool) {
	i := sort.Search(len(c.segs), func(i int) bool { return c.segs[i].end > addr })
	if i < len(c.segs) && c.segs[i].start <= addr {
		return c.segs[i], true
	}
	return seg{}, false
}

// errRetry: the pages moved or an event is queued; look them up again.
var errRetry = errors.New("retry")

// bring fetches [a, b) of segment g (looked up at generation gen) and
// copies it in.
func (c *ctx) bring(g seg, a, b, gen uint64, buf []byte) error {
	buf = buf[:b-a]
	if err := c.s.src.Fetch(c.pid, g.img+(a-g.start), buf); err != nil {
		return fmt.Errorf("fetch %d bytes at %#x of image process %d: %w", len(buf), g.img+(a-g.start), c.pid, err)
	}
	c.s.fetched.Add(int64(len(buf)))
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen {
		return errRetry
	}
	return c.copyIn(a, b, buf)
}

// copyIn copies buf into [a, b) with UFFDIO_COPY, which wakes the threads
// waiting there; pages already there (EEXIST) are kept. c.mu held.
func (c *ctx) copyIn(a, b uint64, buf []byte) error {
	start := a
	for a < b {
		cp := abi.UffdioCopy{Dst: a, Src: uint64(uintptr(unsafe.Pointer(&buf[a-start]))), Len: b - a}
		err := ioctl(c.fd, abi.UFFDIO_COPY, unsafe.Pointer(&cp))
		if cp.Copy > 0 {
			a += uint64(cp.Copy)
			continue
		}
		switch {
		case err == nil:
			a = b
		case errors.Is(err, unix.EEXIST):
			c.wake(a, pageSize)
			a += pageSize
		case errors.Is(err, unix.EAGAIN):
			// An event is queued: it must be read first.
			c.settled(start, a)
			return errRetry
		case errors.Is(err, unix.ESRCH):
			// The address space is gone: the process exited.
			c.gone = true
			c.settled(0, ^uint64(0))
			return nil
		case errors.Is(err, unix.ENOENT):
			// No registered mapping there any more (its event, read
			// already, dropped it; a copy cannot land there).
			c.s.log.Debug("lazy restore: page range not copied", "pid", c.pid, "addr", fmt.Sprintf("%#x", a), "err", err)
			a = b
		default:
			// ENOMEM, EFAULT …: the pages are still missing. Counting
			// them in would let a later fault map a zero page there.
			c.settled(start, a)
			return fmt.Errorf("UFFDIO_COPY %#x-%#x in image process %d: %w", a, b, c.pid, err)
		}
	}
	c.settled(start, b)
	return nil
}

func (c *ctx) wake(addr, n uint64) {
	r := abi.UffdioRange{Start: addr, Len: n}
	_ = ioctl(c.fd, abi.UFFDIO_WAKE, unsafe.Pointer(&r))
}

// prefetch copies the missing pages in address order, MaxFetch at a time.
func (c *ctx) prefetch() {
	defer c.s.wg.Done()
	select {
	case <-c.s.run:
	case <-c.s.allIn:
		return
	case <-c.s.quit:
		return
	}
	buf := make([]byte, MaxFetch)
	for {
		c.mu.Lock()
		if len(c.segs) == 0 || c.s.Err() != nil {
			c.mu.Unlock()
			return
		}
		g, gen := c.segs[0], c.gen
		c.mu.Unlock()
		b := min(g.end, g.start+MaxFetch)
		err := c.bring(g, g.start, b, gen, buf)
		if errors.Is(err, errRetry) {
			c.waitEvent(gen)
			continue
		}
		if err != nil {
			c.s.Fail(err)
			return
		}
	}
}

// waitEvent waits a little for the reader to take the queued event
// (generation past gen), or for the server to close.
func (c *ctx) waitEvent(gen uint64) {
	for i := 0; i < 100; i++ {
		c.mu.Lock()
		moved := c.gen != gen
		c.mu.Unlock()
		if moved || c.s.isClosed() {
			return
		}
		fds := []unix.PollFd{{Fd: int32(c.s.stop[0]), Events: unix.POLLIN}}
		_, _ = unix.Poll(fds, 1)
	}
}

// running reports whether Prefetch was called (the processes run).
func (s *Server) running() bool {
	select {
	case <-s.run:
		return true
	default:
		return false
	}
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// serve reads c's messages until the server closes: events change c.segs,
// faults are served from them.
func (c *ctx) serve() {
	defer c.s.wg.Done()
	defer c.s.serving.Done()
	msgs := make([]abi.UffdMsg, 64)
	var faults []uint64
	buf := make([]byte, faultChunk)
	for {
		fds := []unix.PollFd{{Fd: int32(c.fd), Events: unix.POLLIN}, {Fd: int32(c.s.stop[0]), Events: unix.POLLIN}}
		timeout := -1
		if len(faults) > 0 {
			timeout = 1
		}
		if _, err := unix.Poll(fds, timeout); err != nil && !errors.Is(err, unix.EINTR) {
			c.s.Fail(fmt.Errorf("poll the userfaultfd of image process %d: %w", c.pid, err))
			return
		}
		if fds[1].Revents != 0 {
			return
		}
		c.mu.Lock()
		faults = c.read(msgs, faults)
		c.mu.Unlock()
		faults = c.serveFaults(faults, buf)
	}
}

// read reads every message queued on c (non-blocking), applies the
// events and appends the faults' pages to faults. c.mu held.
func (c *ctx) read(msgs []abi.UffdMsg, faults []uint64) []uint64 {
	size := int(unsafe.Sizeof(msgs[0]))
	for {
		b := unsafe.Slice((*byte)(unsafe.Pointer(&msgs[0])), len(msgs)*size)
		n, err := unix.Read(c.fd, b)
		if err != nil || n <= 0 {
			return faults
		}
		for i := 0; i < n/size; i++ {
			m := &msgs[i]
			switch m.Event {
			case abi.UFFD_EVENT_PAGEFAULT:
				faults = append(faults, m.FaultAddr()&^(pageSize-1))
				c.s.faults.Add(1)
				if !c.s.released.Load() && !c.s.running() {
					c.s.early.Add(1)
					c.s.log.Debug("lazy restore: fault before the process runs", "pid", c.pid, "addr", fmt.Sprintf("%#x", m.FaultAddr()), "tid", m.FaultTid())
				}
			case abi.UFFD_EVENT_FORK:
				c.gen++
				child := &ctx{s: c.s, pid: c.pid, fd: m.ForkFd(), segs: append([]seg(nil), c.segs...)}
				c.s.log.Debug("lazy restore: fork", "pid", c.pid, "pages", len(child.segs))
				c.s.start(child)
				c.s.noteFork(Fork{Parent: c.id, Child: child.id, Fd: child.fd, Read: time.Now()})
			case abi.UFFD_EVENT_REMAP:
				c.gen++
				from, to, n := m.Remap()
				c.remap(from, to, n)
			case abi.UFFD_EVENT_REMOVE, abi.UFFD_EVENT_UNMAP:
				c.gen++
				start, end := m.Range()
				c.settled(start, end)
			}
		}
	}
}

// remap moves the missing pages of [from, from+n) to to (mremap).
// c.mu held.
func (c *ctx) remap(from, to, n uint64) {
	var moved, out []seg
	for _, g := range c.segs {
		if g.end <= from || g.start >= from+n {
			out = append(out, g)
			continue
		}
		a, b := max(g.start, from), min(g.end, from+n)
		if g.start < a {
			out = append(out, seg{g.start, a, g.img})
		}
		if b < g.end {
			out = append(out, seg{b, g.end, g.img + (b - g.start)})
		}
		moved = append(moved, seg{a - from + to, b - from + to, g.img + (a - g.start)})
	}
	// The destination held no missing pages of ours (mremap unmapped
	// it first, and its event came before).
	out = append(out, moved...)
	sort.Slice(out, func(i, j int) bool { return out[i].start < out[j].start })
	c.segs = out
}

// serveFaults serves each faulting page: from its segment, or a zero page
// when none holds it (never saved, or dropped since). Pages that must wait
// for an event stay in the returned list.
func (c *ctx) serveFaults(faults []uint64, buf []byte) []uint64 {
	var left []uint64
	for _, addr := range faults {
		c.mu.Lock()
		g, ok := c.find(addr)
		gen := c.gen
		if !ok {
			err := c.zero(addr)
			c.mu.Unlock()
			if errors.Is(err, errRetry) {
				left = append(left, addr)
			} else if err != nil {
				c.s.Fail(err)
			}
			continue
		}
		c.mu.Unlock()
		a := max(g.start, addr&^(faultChunk-1))
		b := min(g.end, a+faultChunk)
		err := c.bring(g, a, b, gen, buf)
		if errors.Is(err, errRetry) {
			left = append(left, addr)
			continue
		}
		if err != nil {
			c.s.Fail(err)
		}
	}
	return left
}

// zero maps the zero page at addr (a page the image does not hold).
// c.mu held.
func (c *ctx) zero(addr uint64) error {
	z := abi.UffdioZeropage{Range: abi.UffdioRange{Start: addr, Len: pageSize}}
	err := ioctl(c.fd, abi.UFFDIO_ZEROPAGE, unsafe.Pointer(&z))
	switch {
	case err == nil:
	case errors.Is(err, unix.EEXIST):
		c.wake(addr, pageSize)
	case errors.Is(err, unix.EAGAIN):
		return errRetry
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ESRCH):
		// The mapping, or the address space, is gone.
		c.wake(addr, pageSize)
	default:
		return fmt.Errorf("UFFDIO_ZEROPAGE %#x in image process %d: %w", addr, c.pid, err)
	}
	return nil
}
