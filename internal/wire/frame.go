package wire

import (
	"bufio"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"time"
)

// Type is a frame's type.
type Type uint8

// Frame types, in the order a connection uses them (see the package doc).
const (
	Hello    Type = 1
	Auth     Type = 2
	AuthOK   Type = 3
	Error    Type = 4
	Open     Type = 5
	OK       Type = 6
	File     Type = 7
	Data     Type = 8
	End      Type = 9
	Commit   Type = 10
	Stored   Type = 11
	Ready    Type = 12
	Go       Type = 13
	Restored Type = 14
	// Chunk and Tail stream the page files of a pre-copy migration's
	// last image as its rounds write them (stream.go).
	Chunk Type = 15
	Tail  Type = 16
)

var typeNames = map[Type]string{
	Hello: "hello", Auth: "auth", AuthOK: "auth-ok", Error: "error", Open: "open", OK: "ok",
	File: "file", Data: "data", End: "end", Commit: "commit", Stored: "stored", Ready: "ready",
	Go: "go", Restored: "restored", Chunk: "chunk", Tail: "tail",
}

// String names the type in messages.
func (t Type) String() string {
	if s, ok := typeNames[t]; ok {
		return s
	}
	return fmt.Sprintf("type %d", uint8(t))
}

const (
	// headerLen is the size of a frame header: type, 3 reserved bytes,
	// the payload length.
	headerLen = 8
	// MaxPayload bounds the clear payload of any frame (a Data frame
	// carries at most this much of a file).
	MaxPayload = 1 << 20
	// maxClear bounds a frame before the handshake is done (hello,
	// auth, an error message).
	maxClear = maxMsg
	// tagLen is the GCM tag a sealed frame adds.
	tagLen = 16
	// maxFrame bounds the length field of any frame read.
	maxFrame = MaxPayload + tagLen
	// bufSize is the buffer in front of the socket for writing.
	bufSize = 1 << 20
	// readBuf is the buffer in front of the socket for reading: small,
	// so that the rest of a large frame is read straight into its
	// buffer (bufio reads directly into requests larger than itself).
	readBuf = 64 << 10
	// directWrite is the frame size from which Send writes to the
	// socket directly.
	directWrite = 64 << 10
)

// ErrProtocol reports a peer that broke the protocol: an unknown or
// unexpected frame type, a length out of bounds, a frame that fails its
// integrity check.
var ErrProtocol = errors.New("protocol violation")

// Conn is one authenticated connection (after Client or Server): frames
// sealed with the key of their direction. It is not safe for concurrent
// use, except that Close may be called at any time.
type Conn struct {
	c    net.Conn
	r    *bufio.Reader
	w    *bufio.Writer
	peer string // the remote address, for messages

	seal, open   cipher.AEAD   // nil before the handshake
	macOnly      bool          // IntegrityOnly: payloads in the clear, tag after
	idle         time.Duration // read deadline set before each frame (0: none)
	sendN, recvN uint64        // frame counters: the GCM nonces
	rbuf, wbuf   []byte        // reused frame buffers

	// Pipelining (pipe.go): the buffers of each direction, the frames
	// read ahead, and why a direction is broken (nil: it is not).
	sendBufs, recvBufs [][]byte
	ra                 *readahead
	sendErr, recvErr   error

	// deadline is the last SetDeadline, in Unix nanoseconds (0: none),
	// for awaitReadable; it may be set while another goroutine waits.
	deadline atomic.Int64
}

func newConn(c net.Conn) *Conn {
	return &Conn{
		c:    c,
		r:    bufio.NewReaderSize(c, readBuf),
		w:    bufio.NewWriterSize(c, bufSize),
		peer: c.RemoteAddr().String(),
		rbuf: make([]byte, headerLen+maxFrame),
		wbuf: make([]byte, headerLen, headerLen+maxFrame),
	}
}

// Peer is the remote address.
func (c *Conn) Peer() string { return c.peer }

// Close closes the connection.
func (c *Conn) Close() error { return c.c.Close() }

// SetDeadline sets the read and write deadline of the socket (zero: none).
// Without an idle limit it also bounds Await, which waits outside the
// socket's reads.
func (c *Conn) SetDeadline(t time.Time) error {
	var ns int64
	if !t.IsZero() {
		ns = t.UnixNano()
	}
	c.deadline.Store(ns)
	return c.c.SetDeadline(t)
}

// nonce returns the GCM nonce of frame n: 4 zero bytes, n big-endian.
// Each direction has its own key, so the counters never meet.
func nonce(n uint64) []byte {
	var b [12]byte
	binary.BigEndian.PutUint64(b[4:], n)
	return b[:]
}

// macNonce is the GMAC nonce of IntegrityOnly frame n of type t: t, 3
// zero bytes, n big-endian. The tag covers the type and counter through
// it, the payload as additional data and the payload's length through
// GHASH's length block: the whole frame, whose reserved bytes must be 0.
func macNonce(t Type, n uint64) []byte {
	b := nonce(n)
	b[0] = byte(t)
	return b
}

// Send writes one frame (sealed once the handshake is done) into the
// buffer; Flush sends it. payload must be at most MaxPayload.
func (c *Conn) Send(t Type, payload []byte) error {
	if len(payload) > MaxPayload {
		return fmt.Errorf("send %v to %s: payload of %d bytes exceeds %d", t, c.peer, len(payload), MaxPayload)
	}
	if c.sendErr != nil {
		return c.sendErr
	}
	n := len(payload)
	if c.seal != nil {
		n += tagLen
	}
	if c.idle > 0 {
		_ = c.c.SetWriteDeadline(time.Now().Add(c.idle))
	}
	// The frame is built whole in wbuf: header, then the (sealed)
	// payload, which the header authenticates.
	frame := c.wbuf[:headerLen]
	frame[0], frame[1], frame[2], frame[3] = byte(t), 0, 0, 0
	binary.BigEndian.PutUint32(frame[4:], uint32(n))
	switch {
	case c.seal == nil:
		frame = append(frame, payload...)
	case c.macOnly:
		frame = append(frame, payload...)
		frame = c.seal.Seal(frame, macNonce(t, c.sendN), nil, payload)
		c.sendN++
	default:
		frame = c.seal.Seal(frame, nonce(c.sendN), payload, frame[:headerLen])
		c.sendN++
	}
	// A large frame goes straight to the socket (after what is
	// buffered), not through the buffer.
	if len(frame) >= directWrite {
		if err := c.w.Flush(); err != nil {
			return c.broke(fmt.Errorf("send %v to %s: %w", t, c.peer, err))
		}
		if _, err := c.c.Write(frame); err != nil {
			return c.broke(fmt.Errorf("send %v to %s: %w", t, c.peer, err))
		}
		return nil
	}
	if _, err := c.w.Write(frame); err != nil {
		return c.broke(fmt.Errorf("send %v to %s: %w", t, c.peer, err))
	}
	return nil
}

// Flush sends the buffered frames.
func (c *Conn) Flush() error {
	if c.sendErr != nil {
		return c.sendErr
	}
	if err := c.w.Flush(); err != nil {
		return c.broke(fmt.Errorf("send to %s: %w", c.peer, err))
	}
	return nil
}

// SendNow writes one frame and flushes.
func (c *Conn) SendNow(t Type, payload []byte) error {
	if err := c.Send(t, payload); err != nil {
		return err
	}
	return c.Flush()
}

// SetIdle makes every Recv fail when its frame does not start arriving
// within d, and every Send when the peer takes none of it for d (0: wait
// for ever).
func (c *Conn) SetIdle(d time.Duration) { c.idle = d }

// Recv reads one frame and checks it (its tag, once sealed). The payload
// is valid until the next Recv. A peer's Error frame is returned as an
// error (PeerError) whatever the caller expected.
func (c *Conn) Recv() (Type, []byte, error) {
	if c.recvErr != nil {
		return 0, nil, c.recvErr
	}
	if c.ra != nil {
		return c.ra.next(c)
	}
	return c.recvFrame(c.rbuf)
}

// recvFrame reads one frame into rbuf (headerLen+maxFrame bytes at least),
// header first, and checks it, as Recv.
func (c *Conn) recvFrame(rbuf []byte) (Type, []byte, error) {
	if c.idle > 0 {
		_ = c.c.SetReadDeadline(time.Now().Add(c.idle))
	}
	h := rbuf[:headerLen]
	if _, err := io.ReadFull(c.r, h); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, fmt.Errorf("receive from %s: %w", c.peer, err)
	}
	t := Type(h[0])
	n := binary.BigEndian.Uint32(h[4:])
	if h[1] != 0 || h[2] != 0 || h[3] != 0 {
		return 0, nil, fmt.Errorf("receive from %s: reserved header bytes set: %w", c.peer, ErrProtocol)
	}
	if _, ok := typeNames[t]; !ok {
		return 0, nil, fmt.Errorf("receive from %s: unknown frame %v: %w", c.peer, t, ErrProtocol)
	}
	if n > maxFrame || (c.open != nil && n < tagLen) || (c.open == nil && n > maxClear) {
		return 0, nil, fmt.Errorf("receive %v from %s: length %d out of bounds: %w", t, c.peer, n, ErrProtocol)
	}
	buf := rbuf[headerLen : headerLen+n]
	if _, err := io.ReadFull(c.r, buf); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, fmt.Errorf("receive %v from %s: %w", t, c.peer, err)
	}
	if c.open != nil {
		var err error
		if c.macOnly {
			// The tag ends the frame (macNonce).
			buf = buf[:n-tagLen]
			_, err = c.open.Open(nil, macNonce(t, c.recvN), rbuf[headerLen+n-tagLen:headerLen+n], buf)
		} else {
			buf, err = c.open.Open(buf[:0], nonce(c.recvN), buf, h)
		}
		if err != nil {
			return 0, nil, fmt.Errorf("receive %v from %s: frame %d fails its integrity check: %w", t, c.peer, c.recvN, ErrProtocol)
		}
		c.recvN++
	}
	if t == Error {
		return t, nil, &PeerError{Peer: c.peer, Msg: cleanMsg(buf)}
	}
	return t, buf, nil
}

// Expect reads one frame and requires its type to be want.
func (c *Conn) Expect(want Type) ([]byte, error) {
	t, p, err := c.Recv()
	if err != nil {
		return nil, err
	}
	if t != want {
		return nil, fmt.Errorf("receive from %s: got %v, want %v: %w", c.peer, t, want, ErrProtocol)
	}
	return p, nil
}

// SendError tells the peer why the connection ends (best effort: the
// peer may be gone).
func (c *Conn) SendError(msg string) {
	if len(msg) > maxMsg {
		msg = msg[:maxMsg]
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	_ = c.SendNow(Error, []byte(msg))
}

// maxMsg bounds an error message sent or shown.
const maxMsg = 4096

// PeerError is an Error frame the peer sent: why it gave up.
type PeerError struct {
	Peer, Msg string
}

func (e *PeerError) Error() string { return fmt.Sprintf("%s: %s", e.Peer, e.Msg) }

// cleanMsg keeps a peer's message printable and bounded.
func cleanMsg(b []byte) string {
	if len(b) > maxMsg {
		b = b[:maxMsg]
	}
	out := make([]rune, 0, len(b))
	for _, r := range string(b) {
		if r < 0x20 || r == 0x7f {
			r = '?'
		}
		out = append(out, r)
	}
	return string(out)
}
