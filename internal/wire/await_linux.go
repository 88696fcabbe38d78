package wire

import (
	"fmt"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// awaitSlice bounds one poll(2) of awaitReadable: a Close from another
// goroutine waits for the poll in progress to end (the descriptor is
// held meanwhile), so at most this long.
const awaitSlice = 20 * time.Millisecond

// Await is Expect for a frame this side waits for with nothing else to
// do, those of a migration's downtime (Stored, Ready, Go, Restored): it
// is taken the moment it arrives. The idle limit (SetIdle), or without one
// the connection's deadline (Conn.SetDeadline: the one a read would
// meet), bounds the wait as it bounds Expect's; a Close from another
// goroutine ends it.
//
// Only for such waits: the thread in poll(2) keeps its processor until
// the runtime's monitor takes it back, which a busy phase (post-copy's
// page phase: fault handlers, copies) would feel; its loops keep Recv.
//
// Left to Go's network poller, such a frame was taken 7-16 ms late: the
// thread that polls the network finds the waiting goroutine runnable but
// no processor to run it on when the others are held by threads in
// blocking system calls (tracers in wait4, userfaultfd readers), until
// the runtime's monitor takes one back, every 10 ms once the process is
// idle. Here the goroutine waits in poll(2) itself, a blocking call the
// kernel ends as soon as bytes arrive.
func (c *Conn) Await(want Type) ([]byte, error) {
	if c.ra == nil && !c.awaitReadable(nil) {
		return nil, c.idleErr()
	}
	return c.Expect(want) // frames read ahead: that goroutine waited so
}

// awaitReadable blocks in poll(2), in slices of awaitSlice, until the
// socket under c has bytes to read (or an error or end to report), and
// says false when the idle limit (SetIdle), or without one the
// connection's deadline (SetDeadline), passed first. It
// returns true at once when bytes are buffered already, under TLS (its
// records may hold bytes already decrypted, which poll cannot see), when
// the connection is not a socket or is closed (between two slices), and
// when stop is closed: the read that follows then waits as a plain read
// does (stopReadahead cuts it with a deadline).
func (c *Conn) awaitReadable(stop <-chan struct{}) bool {
	if c.recvErr != nil || c.r.Buffered() > 0 {
		return true
	}
	sc, ok := c.c.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	idle := c.idle
	deadline := time.Now().Add(idle)
	for {
		select {
		case <-stop:
			return true
		default:
		}
		// With an idle limit each read sets its own deadline over the
		// connection's (recvFrame); without one the connection's holds.
		until := deadline
		if idle <= 0 {
			until = time.Time{}
			if ns := c.deadline.Load(); ns != 0 {
				until = time.Unix(0, ns)
			}
		}
		slice := awaitSlice
		if !until.IsZero() {
			left := time.Until(until)
			if left <= 0 {
				return false
			}
			slice = min(left, awaitSlice)
		}
		ms := int(slice/time.Millisecond) + 1
		ready := false
		if err := rc.Control(func(fd uintptr) {
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			n, err := unix.Poll(fds, ms)
			ready = n > 0 || (err != nil && err != unix.EINTR)
		}); err != nil || ready {
			return true
		}
	}
}

// idleErr is the error of a frame that did not come within the idle
// limit or before the deadline.
func (c *Conn) idleErr() error {
	if c.idle > 0 {
		return fmt.Errorf("receive from %s: nothing for %v: %w", c.peer, c.idle, os.ErrDeadlineExceeded)
	}
	return fmt.Errorf("receive from %s: nothing before the deadline: %w", c.peer, os.ErrDeadlineExceeded)
}
