package wire

import (
	"encoding/binary"
	"testing"
	"time"
)

// TestStopReadaheadCutsLateRead: a refusal inside an image stops the
// reading ahead at once, even when its goroutine starts a read just after
// the cut (it sets its own idle deadline then): ReceiveImage must not
// wait for the idle limit while the peer sends nothing more.
func TestStopReadaheadCutsLateRead(t *testing.T) {
	sc, serr, cc, cerr := handshake(t, testToken, testToken)
	if serr != nil || cerr != nil {
		t.Fatal(serr, cerr)
	}
	defer sc.Close()
	defer cc.Close()
	const idle = 20 * time.Second
	sc.SetIdle(idle)
	first := true
	readaheadHook = func() {
		if first { // the refused frame is read at once
			first = false
			return
		}
		time.Sleep(300 * time.Millisecond) // the next read starts after the cut
	}
	defer func() { readaheadHook = nil }()
	p := binary.BigEndian.AppendUint64(nil, 10)
	p = append(p, "../evil"...)
	if err := cc.SendNow(File, p); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err := sc.ReceiveImage(t.TempDir())
	if err == nil {
		t.Fatal("a file named ../evil was accepted")
	}
	if took := time.Since(start); took >= idle {
		t.Fatalf("the refusal (%v) came after %v: the idle limit, not the cut", err, took)
	}
}
