package lazy

import (
	"errors"
	"fmt"
	"time"
)

// Fork is a fork event: a served process forked while pages were
// missing, and its child got its own userfaultfd, served from then on.
// The event names no pid: the kernel sends it, and waits for it to be
// read, before the child has one; the caller finds the child (among the
// parent's children) and keeps its userfaultfd alive while the child
// lives (see README, rtcr killed).
type Fork struct {
	// Parent and Child are the ids (Add, or an earlier Fork's Child) of
	// the two processes' userfaultfds.
	Parent, Child int
	// Fd is the server's copy of the child's userfaultfd, open until
	// Close.
	Fd int
	// Read is when the event was read (the parent then went on with its
	// fork).
	Read time.Time
}

// Forked has a value while fork events wait to be taken (TakeForks).
func (s *Server) Forked() <-chan struct{} { return s.forked }

// TakeForks returns the fork events read since the last call, in the
// order they were read.
func (s *Server) TakeForks() []Fork {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.forks
	s.forks = nil
	return f
}

// Applied returns once every message read so far from userfaultfd id
// has been applied: its fork events are then TakeForks'. The kernel lets
// a forking process go on once its event is read, before the server has
// noted it: a child seen among its parent's children is named by an
// event TakeForks returns only after Applied of the parent.
func (s *Server) Applied(id int) {
	if c := s.ctx(id); c != nil {
		c.mu.Lock()
		c.mu.Unlock()
	}
}

// Missing reports whether the userfaultfd id still has pages missing, and
// whether its address space is known to be gone (its process exited): a
// child forked while pages were missing needs its userfaultfd kept alive
// only while pages are missing.
func (s *Server) Missing(id int) (missing, gone bool) {
	s.mu.Lock()
	if id < 0 || id >= len(s.ctxs) {
		s.mu.Unlock()
		return false, false
	}
	c := s.ctxs[id]
	s.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.segs) > 0, c.gone
}

// noteFork records the fork event f for TakeForks.
func (s *Server) noteFork(f Fork) {
	s.mu.Lock()
	s.forks = append(s.forks, f)
	s.mu.Unlock()
	select {
	case s.forked <- struct{}{}:
	default:
	}
}

// MissingRange returns the largest range of pages userfaultfd id still
// misses (where they are now); ok is false when none is missing.
func (s *Server) MissingRange(id int) (start, end uint64, ok bool) {
	c := s.ctx(id)
	if c == nil {
		return 0, 0, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.segs) == 0 {
		return 0, 0, false
	}
	g := c.largest()
	return g.start, g.end, true
}

// ctx returns the ctx of userfaultfd id, nil if none.
func (s *Server) ctx(id int) *ctx {
	s.mu.Lock()
	defer s.mu.Unlock()
	if id < 0 || id >= len(s.ctxs) {
		return nil
	}
	return s.ctxs[id]
}

// largest returns the largest missing range. c.mu held, segs not empty.
func (c *ctx) largest() seg {
	g := c.segs[0]
	for _, x := range c.segs {
		if x.end-x.start > g.end-g.start {
			g = x
		}
	}
	return g
}

// Probe brings in one missing page of userfaultfd id (in the middle of
// its largest missing range) to
// tell which process it belongs to: before is called with the page's
// address just before the copy (to look at the candidates), and Probe
// returns that address once the page is in. ok is false when nothing is
// missing, or an event came meanwhile (try again). The page is the
// image's, as the background copy would have brought it.
func (s *Server) Probe(id int, before func(addr uint64)) (addr uint64, ok bool, err error) {
	s.mu.Lock()
	if id < 0 || id >= len(s.ctxs) {
		s.mu.Unlock()
		return 0, false, nil
	}
	c := s.ctxs[id]
	s.mu.Unlock()
	c.mu.Lock()
	if len(c.segs) == 0 || c.gone {
		c.mu.Unlock()
		return 0, false, nil
	}
	// The middle of the largest range: the page least likely to be
	// touched meanwhile (the children of a fork run on its stack's top,
	// the background copy goes in address order).
	g, gen := c.largest(), c.gen
	c.mu.Unlock()
	addr = g.start + (g.end-g.start)/2&^(pageSize-1)
	before(addr)
	err = c.bring(g, addr, addr+pageSize, gen, make([]byte, pageSize))
	if errors.Is(err, errRetry) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("probe: %w", err)
	}
	return addr, true, nil
}
