package mem

import (
	"sync"
	"unsafe"
)

// minSpare is the least rest of a buffer worth lending: below it the next
// copy would flush after a few pages anyway.
const minSpare = 256 << 10

// spare lends the unused rest of the last buffer one process's holding
// copy filled (copier.hold: buffers kept until the tree is released) to
// the copier of the next process of the same dump. Without it every
// process of a tree took buffers of its own while the others were held,
// and the kernel populated a fresh huge page for each (clearing 2 MiB,
// several milliseconds on our VMs) to copy a few pages: most of the
// memory step of a small process. Lent, a tree of small processes fills
// one buffer. The mapping goes back to the pool with the last copier
// that used it (shareBuffer, putBuffer).
type spare struct {
	mu    sync.Mutex
	rest  []byte  // zero length; the rest as its capacity
	base  []byte  // the mapped buffer rest is in; nil for Go memory
	owner *copier // the copier that lent it
}

// lend offers the rest of c's last filled buffer, if c filled one and
// enough of it is left.
func (sp *spare) lend(c *copier) {
	if sp == nil || c.last == nil || cap(c.last)-len(c.last) < minSpare {
		return
	}
	sp.mu.Lock()
	defer sp.mu.Unlock()
	sp.rest = c.last[len(c.last):len(c.last):cap(c.last)]
	sp.base, sp.owner = c.baseOf(c.last), c
}

// take makes the lent rest c's first buffer, and reports whether there
// was one: c shares its mapping from now on.
func (sp *spare) take(c *copier) bool {
	if sp == nil {
		return false
	}
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.owner == nil {
		return false
	}
	c.buf = sp.rest
	c.made++
	if sp.base != nil {
		shareBuffer(sp.base)
		c.mapped = append(c.mapped, sp.base)
	}
	sp.rest, sp.base, sp.owner = nil, nil, nil
	return true
}

// withdraw takes back what c lent and nobody took: c is closing, and its
// mapping may go back to the pool.
func (sp *spare) withdraw(c *copier) {
	if sp == nil {
		return
	}
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.owner == c {
		sp.rest, sp.base, sp.owner = nil, nil, nil
	}
}

// baseOf returns the mapped buffer of c that b is part of (nil: Go memory).
func (c *copier) baseOf(b []byte) []byte {
	p := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	for _, m := range c.mapped {
		start := uintptr(unsafe.Pointer(unsafe.SliceData(m)))
		if p >= start && p < start+uintptr(cap(m)) {
			return m
		}
	}
	return nil
}
