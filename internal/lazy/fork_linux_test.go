package lazy

import (
	"testing"
	"time"
)

// Applied waits until the messages being read from a userfaultfd are
// applied: a fork event read (its child then appears) is noted, and
// TakeForks returns it, once Applied of the parent has returned.
func TestAppliedWaitsForRead(t *testing.T) {
	s, err := NewServer(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &ctx{s: s, fd: -1}
	s.ctxs = append(s.ctxs, c)
	defer s.Close()
	c.mu.Lock() // as serve does around read
	go func() {
		time.Sleep(10 * time.Millisecond)
		s.noteFork(Fork{Parent: 0, Child: 1})
		c.mu.Unlock()
	}()
	s.Applied(0)
	if f := s.TakeForks(); len(f) != 1 || f[0].Child != 1 {
		t.Fatalf("TakeForks after Applied: %+v, want the fork noted under the read", f)
	}
}
