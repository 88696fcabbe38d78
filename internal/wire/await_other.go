//go:build !linux

package wire

// Await is Expect here: the wait is left to Go's network poller.
func (c *Conn) Await(want Type) ([]byte, error) { return c.Expect(want) }

// awaitReadable leaves the wait to the read that follows.
func (c *Conn) awaitReadable(stop <-chan struct{}) bool { return true }

// idleErr is never needed here.
func (c *Conn) idleErr() error { return nil }
