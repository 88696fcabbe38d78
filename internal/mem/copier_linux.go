package mem

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// copyBuf is the size of one process_vm_readv batch.
const copyBuf = 8 << 20

// copier copies remote memory into the page file in large batches: one
// process_vm_readv per batch fills a buffer while a second goroutine
// writes the previous buffer out.
type copier struct {
	pid    int
	queued int64 // bytes queued so far (the page-file offset of the next byte)
	buf    []byte
	iov    []unix.RemoteIovec
	free   chan []byte
	full   chan []byte
	mapped [][]byte // buffers to unmap at close
	made   int      // buffers made
	done   chan error
	// cow marks the queued ranges (by index in iov) of pages the
	// process may share copy-on-write: they are read through
	// /proc/PID/mem (memFile), because process_vm_readv pins the pages
	// it reads, and the kernel (since 5.19) unshares an anonymous page
	// pinned while shared: a dump would copy every page a pre-fork tree
	// shares, in the running tree.
	cow     []bool
	memFile *os.File
	// hold (DumpLater) keeps the filled buffers from the writer
	// (held) while the copy finds free ones: a dump that fits in
	// copyBuffers buffers writes nothing while the tree is frozen, and
	// the writes (for a page file on tmpfs, the kernel allocating and
	// clearing its pages) no longer take a CPU from the copy and from
	// smaps in the freeze. Once the buffers run out, or at close, the
	// held ones go to the writer and the copy writes as it goes.
	hold bool
	held [][]byte
	// failed is set when a write failed (disk full, Ctrl-C): reading the
	// rest of the memory would only keep the target frozen longer.
	failed atomic.Bool
	// last is the buffer the last flush filled, and spare the dump's
	// lending place for its unused rest (lend; nil: none).
	last  []byte
	spare *spare
}

// errWriteFailed stops the copy after the writer failed; close returns the
// writer's own error.
var errWriteFailed = errors.New("page file write failed")

// copyBuffers bounds the copy buffers of one copier: two to begin with
// (one read while the other is written), more made only when the reader
// finds none free, so that a small dump (an increment) is copied out of
// the frozen process without waiting for its page file's writes, which
// may end after the release (DumpLater). They come from the pool
// (buffers_linux.go).
const copyBuffers = 4

// newCopier returns a copier of pid's memory into w; with sp, its first
// buffer is the rest another copier lent there, when one is (spare.take).
func newCopier(pid int, w io.Writer, sp *spare) *copier {
	c := &copier{pid: pid, free: make(chan []byte, copyBuffers), full: make(chan []byte, copyBuffers), done: make(chan error, 1), spare: sp}
	go func() {
		var err error
		for b := range c.full {
			if err == nil {
				if _, err = w.Write(b); err != nil {
					c.failed.Store(true)
				}
			}
			c.free <- b[:0]
		}
		c.done <- err
	}()
	if !sp.take(c) {
		c.buf = c.buffer()
	}
	return c
}

func (c *copier) offset() int64 { return c.queued }

// add queues n bytes at addr; cow says they may be shared copy-on-write
// with another process.
func (c *copier) add(addr, n uint64, cow bool) error {
	for n > 0 {
		if c.buf == nil {
			c.next()
		}
		room := uint64(cap(c.buf) - len(c.buf))
		if room == 0 || len(c.iov) == 1024 {
			if err := c.flush(); err != nil {
				return err
			}
			continue
		}
		k := min(room, n)
		c.iov = append(c.iov, unix.RemoteIovec{Base: uintptr(addr), Len: int(k)})
		c.cow = append(c.cow, cow)
		c.buf = c.buf[:len(c.buf)+int(k)]
		c.queued += int64(k)
		addr += k
		n -= k
	}
	return nil
}

// flush reads the queued ranges into the buffer and hands it to the writer.
func (c *copier) flush() error {
	if c.failed.Load() {
		return errWriteFailed
	}
	if len(c.buf) == 0 {
		return nil
	}
	// Pages already there cost the kernel a walk; an error (an older
	// kernel, Go memory) leaves them to page faults.
	_ = unix.Madvise(c.buf, unix.MADV_POPULATE_WRITE)
	var local []unix.Iovec
	var remote []unix.RemoteIovec
	total, off := 0, 0
	for i, r := range c.iov {
		if !c.cow[i] {
			iov := unix.Iovec{Base: &c.buf[off]}
			iov.SetLen(r.Len)
			local, remote = append(local, iov), append(remote, r)
			total += r.Len
		}
		off += r.Len
	}
	n := 0
	var err error
	if total > 0 {
		n, err = unix.ProcessVMReadv(c.pid, local, remote, 0)
	}
	off = 0
	for i, r := range c.iov {
		// Possibly shared pages, and (when the batch read failed)
		// pages the process cannot read itself (PROT_NONE): through
		// /proc/PID/mem range by range.
		if c.cow[i] || err != nil || n != total {
			if err := c.readMem(uint64(r.Base), c.buf[off:off+r.Len]); err != nil {
				return err
			}
		}
		off += r.Len
	}
	if c.hold {
		c.held = append(c.held, c.buf)
	} else {
		c.full <- c.buf
	}
	c.last, c.buf = c.buf, nil // the next one when more is queued (next)
	c.iov, c.cow = c.iov[:0], c.cow[:0]
	return nil
}

// next makes a buffer current: a free one, a new one while fewer than
// copyBuffers were made, or (holding no longer) the first the writer
// gives back.
func (c *copier) next() {
	select {
	case c.buf = <-c.free:
	default:
		if c.made < copyBuffers {
			c.buf = c.buffer()
		} else {
			c.hold = false
			c.sendHeld()
			c.buf = <-c.free
		}
	}
}

// sendHeld hands the held buffers to the writer, in the order they were
// filled (the channel holds copyBuffers: it never blocks).
func (c *copier) sendHeld() {
	for _, b := range c.held {
		c.full <- b
	}
	c.held = c.held[:0]
}

// readMem reads len(b) bytes at addr through /proc/PID/mem, which does
// not pin pages (unlike process_vm_readv): pages shared copy-on-write stay
// shared.
func (c *copier) readMem(addr uint64, b []byte) error {
	if c.memFile == nil {
		f, err := os.Open(fmt.Sprintf("/proc/%d/mem", c.pid))
		if err != nil {
			return fmt.Errorf("read memory of %d: %w", c.pid, err)
		}
		c.memFile = f
	}
	if _, err := c.memFile.ReadAt(b, int64(addr)); err != nil {
		return fmt.Errorf("read %d bytes at %#x of %d: %w", len(b), addr, c.pid, err)
	}
	return nil
}

// buffer returns an empty copy buffer of copyBuf bytes, from the pool
// when it has one (see getBuffer).
func (c *copier) buffer() []byte {
	c.made++
	b, mapped := getBuffer()
	if mapped {
		c.mapped = append(c.mapped, b)
	}
	return b[:0]
}

// close flushes what is queued and waits for the writer.
func (c *copier) close() error {
	err := c.flush()
	c.spare.withdraw(c)
	c.hold = false
	c.sendHeld()
	close(c.full)
	if werr := <-c.done; werr != nil && (err == nil || errors.Is(err, errWriteFailed)) {
		err = fmt.Errorf("write pages: %w", werr)
	}
	for _, b := range c.mapped {
		putBuffer(b)
	}
	if c.memFile != nil {
		_ = c.memFile.Close()
	}
	return err
}
