package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Pipelining (issue 11, throughput): a file's Data frames are read and
// sealed by one goroutine while another writes the frames before them to
// the socket; on the receiving side one goroutine reads and opens frames
// ahead while the caller writes the payloads before them into files. On
// a machine of two cores the sealing and the socket's copy, and the
// opening and the file's copy, then run side by side instead of in turn.
// Frames still go in counter order: one goroutine seals them all, in
// order, and the other writes them in the order it got them; one
// goroutine reads and opens them all, and hands them over in order.

// pipeBufs is the number of frame buffers of a pipeline, per direction:
// one being filled, one being written or read, two to absorb jitter.
const pipeBufs = 4

// frameBufs returns n buffers of a whole sealed frame (header, payload,
// tag), made on first use and kept.
func frameBufs(bufs *[][]byte, n int) [][]byte {
	for len(*bufs) < n {
		*bufs = append(*bufs, make([]byte, headerLen+maxFrame))
	}
	return (*bufs)[:n]
}

// sealInto builds frame t in buf, whose bytes [headerLen, headerLen+n)
// hold the clear payload: the header, then the payload sealed in place
// (with the next counter as nonce, the header as additional data), or,
// IntegrityOnly, left as it is and followed by its tag (macNonce). It
// returns the frame.
func (c *Conn) sealInto(buf []byte, t Type, n int) []byte {
	c.header(buf, t, n)
	p := buf[headerLen : headerLen+n]
	switch {
	case c.seal == nil:
		return buf[:headerLen+n]
	case c.macOnly:
		frame := c.seal.Seal(buf[:headerLen+n], macNonce(t, c.sendN), nil, p)
		c.sendN++
		return frame
	}
	out := c.seal.Seal(p[:0], nonce(c.sendN), p, buf[:headerLen])
	c.sendN++
	return buf[:headerLen+len(out)]
}

// header writes the header of frame t with a clear payload of n bytes
// into buf.
func (c *Conn) header(buf []byte, t Type, n int) {
	l := n
	if c.seal != nil {
		l += tagLen
	}
	buf[0], buf[1], buf[2], buf[3] = byte(t), 0, 0, 0
	binary.BigEndian.PutUint32(buf[4:], uint32(l))
}

// fillFunc makes the next frame: it writes its clear payload into p
// (MaxPayload bytes) and returns its type and length; last says it is
// the final frame. It runs on the sealing goroutine. (Sealing straight
// from a file's mapping instead of reading it into p was tried: AES-GCM
// and GHASH reading the page cache's scattered pages ran about three
// times slower than on the buffer read(2) had just filled, more than the
// copy they saved.)
type fillFunc func(p []byte) (t Type, n int, last bool, err error)

// sealedFrame is one frame handed from the sealing goroutine to the
// writing one, or the error that ends the sealing.
type sealedFrame struct {
	buf, frame []byte
	last       bool
	err        error
}

// pipeSend sends the frames fill makes until its last one or its error:
// fill and the sealing run on a goroutine of their own, the socket
// writes on the caller's. Whatever was buffered goes first. A fill error
// is returned once the frames before it are sent (the connection stays
// usable); a socket error leaves the connection broken for sending.
func (c *Conn) pipeSend(fill fillFunc) error {
	if c.sendErr != nil {
		return c.sendErr
	}
	if err := c.Flush(); err != nil {
		return c.broke(err)
	}
	bufs := frameBufs(&c.sendBufs, pipeBufs)
	free := make(chan []byte, len(bufs))
	for _, b := range bufs {
		free <- b
	}
	full := make(chan sealedFrame, len(bufs))
	stop := make(chan struct{})
	go func() {
		defer close(full)
		for {
			var buf []byte
			select {
			case buf = <-free:
			case <-stop:
				return
			}
			fr := c.sealNext(buf, fill)
			select {
			case full <- fr:
			case <-stop:
				return
			}
			if fr.err != nil || fr.last {
				return
			}
		}
	}()
	defer func() {
		close(stop)
		for range full { // the sealing goroutine is gone once full is closed
		}
	}()
	var err error
	for fr := range full {
		if fr.err != nil {
			err = fr.err
			break
		}
		if c.idle > 0 {
			_ = c.c.SetWriteDeadline(time.Now().Add(c.idle))
		}
		if _, werr := c.c.Write(fr.frame); werr != nil {
			err = c.broke(fmt.Errorf("send %v to %s: %w", Type(fr.frame[0]), c.peer, werr))
			break
		}
		free <- fr.buf
	}
	return err
}

// sealNext makes the next frame with fill and seals it into buf.
func (c *Conn) sealNext(buf []byte, fill fillFunc) sealedFrame {
	t, n, last, err := fill(buf[headerLen : headerLen+MaxPayload])
	if err == nil && (n < 0 || n > MaxPayload) {
		err = fmt.Errorf("send %v to %s: payload of %d bytes exceeds %d", t, c.peer, n, MaxPayload)
	}
	if err != nil {
		return sealedFrame{buf: buf, err: err}
	}
	return sealedFrame{buf: buf, frame: c.sealInto(buf, t, n), last: last}
}

// broke marks the connection broken for sending after err (a frame may
// have gone in part, or sealed frames never went): every later Send
// fails with it.
func (c *Conn) broke(err error) error {
	if c.sendErr == nil {
		c.sendErr = err
	}
	return err
}

// errAbandoned marks a connection whose frames were being read ahead when
// their reader gave up: the stream is cut at an unknown frame.
var errAbandoned = errors.New("receiving abandoned in the middle of a stream of frames")

// readahead is a goroutine reading and opening frames ahead of Recv
// (startReadahead).
type readahead struct {
	full chan recvdFrame
	free chan []byte
	stop chan struct{}
	done chan struct{}
	cur  []byte // the buffer of the frame Recv returned last
}

// recvdFrame is one frame read ahead, or the error that ended the reading.
type recvdFrame struct {
	t        Type
	p, buf   []byte
	err      error
	terminal bool
}

// bulk reports whether frames of type t may be read ahead: those inside
// an image, which come one after another without an answer between them.
// The reading ahead stops after any other frame (Commit, Error, …), so
// that no frame meant for a later reader is taken.
func bulk(t Type) bool {
	return t == File || t == Data || t == End || t == Chunk || t == Tail
}

// startReadahead makes Recv return frames a goroutine reads and opens
// ahead, up to pipeBufs of them, until a frame other than bulk ones or
// an error; stopReadahead ends it early. Each payload stays valid until
// the next Recv, as without it.
func (c *Conn) startReadahead() {
	if c.ra != nil || c.recvErr != nil {
		return
	}
	bufs := frameBufs(&c.recvBufs, pipeBufs)
	ra := &readahead{
		full: make(chan recvdFrame, len(bufs)),
		free: make(chan []byte, len(bufs)),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	for _, b := range bufs {
		ra.free <- b
	}
	c.ra = ra
	go func() {
		defer close(ra.done)
		for {
			var buf []byte
			select {
			case buf = <-ra.free:
			case <-ra.stop:
				return
			}
			if readaheadHook != nil {
				readaheadHook()
			}
			// Waited for in poll(2), as Await does: a frame after a
			// pause (a migration's last freeze) was taken up to 10 ms
			// late by Go's network poller.
			var fr recvdFrame
			if c.awaitReadable(ra.stop) {
				t, p, err := c.recvFrame(buf)
				fr = recvdFrame{t: t, p: p, buf: buf, err: err, terminal: err != nil || !bulk(t)}
			} else {
				fr = recvdFrame{buf: buf, err: c.idleErr(), terminal: true}
			}
			select {
			case ra.full <- fr:
			case <-ra.stop:
				return
			}
			if fr.terminal {
				return
			}
		}
	}()
}

// next returns the next frame read ahead; after the last one the
// connection reads frames itself again.
func (ra *readahead) next(c *Conn) (Type, []byte, error) {
	if ra.cur != nil {
		ra.free <- ra.cur // never blocks: free holds every buffer
		ra.cur = nil
	}
	fr := <-ra.full
	ra.cur = fr.buf
	if fr.terminal {
		<-ra.done
		c.ra = nil // fr.buf is not c.rbuf: fr.p stays valid
	}
	return fr.t, fr.p, fr.err
}

// stopReadahead ends the reading ahead, if it still runs: the frames read
// ahead are dropped and a read under way is cut short, so the
// connection is broken for receiving (Recv fails with errAbandoned).
func (c *Conn) stopReadahead() {
	ra := c.ra
	if ra == nil {
		return
	}
	c.ra = nil
	close(ra.stop)
	// The cut ends a read under way; it is set again until the goroutine
	// is done, since a read it starts just after the first cut (it had
	// taken a buffer already) sets its own idle deadline over it.
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for cut := true; cut; {
		_ = c.c.SetReadDeadline(time.Now())
		select {
		case <-ra.done:
			cut = false
		case <-tick.C:
		}
	}
	c.recvErr = fmt.Errorf("receive from %s: %w", c.peer, errAbandoned)
}

// readaheadHook, when set (by tests only), runs in the reading-ahead
// goroutine between taking a buffer and reading a frame into it.
var readaheadHook func()
