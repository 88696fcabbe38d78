package wire

import (
	"errors"
	"os"
	"testing"
	"time"
)

// TestAwait checks Await: it takes a frame sent while it waits and one
// already buffered, refuses a frame of another type, gives up with a
// deadline error once the idle limit passed or, without one, the
// connection's deadline, and returns when the connection is closed under
// it.
func TestAwait(t *testing.T) {
	s, serr, c, cerr := handshake(t, testToken, testToken)
	if serr != nil || cerr != nil {
		t.Fatalf("handshake: server %v, client %v", serr, cerr)
	}
	s.SetIdle(time.Minute)
	sent := make(chan struct{}) // c is used by one goroutine at a time
	go func() {
		defer close(sent)
		time.Sleep(50 * time.Millisecond)
		_ = c.SendNow(Go, nil)
		_ = c.Send(Ready, nil) // these two arrive together: the second is buffered
		_ = c.SendNow(Stored, nil)
	}()
	for _, want := range []Type{Go, Ready} {
		if _, err := s.Await(want); err != nil {
			t.Fatalf("await %v: %v", want, err)
		}
	}
	if _, err := s.Await(Restored); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("await Restored got Stored: %v", err)
	}

	s.SetIdle(100 * time.Millisecond)
	if _, err := s.Await(Go); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("await with nothing sent: %v, want a deadline error", err)
	}

	<-sent
	s.SetIdle(0) // no idle limit: Await waits until a frame, the deadline or a Close
	go func() {
		time.Sleep(50 * time.Millisecond)
		_ = c.SendNow(PageData, []byte("x"))
	}()
	if p, err := s.Await(PageData); err != nil || string(p) != "x" {
		t.Fatalf("await without an idle limit: %q %v", p, err)
	}
	_ = s.SetDeadline(time.Now().Add(100 * time.Millisecond))
	if _, err := s.Await(Go); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("await past the deadline: %v, want a deadline error", err)
	}
	_ = s.SetDeadline(time.Time{})
	done := make(chan error, 1)
	go func() {
		_, err := s.Await(Go)
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	closed := make(chan struct{})
	go func() {
		s.Close()
		close(closed)
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("await on a closed connection succeeded")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("await did not return after the connection was closed")
	}
	select {
	case <-closed:
	case <-time.After(30 * time.Second):
		t.Fatal("Close did not return while Await waited")
	}
}
