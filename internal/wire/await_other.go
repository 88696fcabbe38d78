//go:build !linux

package wire

// Await is Expect here: the wait is left to Go's network poller.
func (c *Conn) Await(want Type) ([]byte, error) { return c.Expect(want) }
