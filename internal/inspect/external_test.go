package inspect

import (
	"bytes"
	"strings"
	"testing"

	"github.com/rtcr/rtcr/internal/image"
	"golang.org/x/sys/unix"
)

// TestWriteExternals: the external objects are listed once per fd with
// their ID, pid, fd number, end or type and what was buffered.
func TestWriteExternals(t *testing.T) {
	c := sample()
	p := &c.Processes[0]
	p.FDs = append(p.FDs,
		image.FD{Num: 5, Kind: image.FDExternal, Flags: unix.O_RDONLY, External: &image.External{ID: "pipe:[77]", Type: image.ExtPipe, Ino: 77, PipeSize: 65536, Data: make([]byte, 2048)}},
		image.FD{Num: 6, Kind: image.FDExternal, Flags: unix.O_RDWR, External: &image.External{ID: "socket:[78]", Type: image.ExtSocket, Ino: 78, SockType: unix.SOCK_SEQPACKET,
			Sock: &image.UnixSockState{Queue: [][]byte{[]byte("ab"), []byte("c")}}}},
		image.FD{Num: 7, Kind: image.FDExternal, Flags: unix.O_WRONLY, External: &image.External{ID: "pipe:[79]", Type: image.ExtPipe, Ino: 79, PipeSize: 4096}},
	)
	var buf bytes.Buffer
	if err := Write(&buf, "/tmp/img", c); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		"External objects (3 fds)",
		"--inherit-fd FD:ID",
		"pipe:[77]    4242  5   pipe, read end          2.0 KiB",
		"socket:[78]  4242  6   unix socket, seqpacket  3 B in 2 messages",
		"pipe:[79]    4242  7   pipe, write end         -",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	buf.Reset()
	if err := Write(&buf, "/tmp/img", sample()); err != nil || !strings.Contains(buf.String(), "External objects (0 fds)\n  (none)") {
		t.Errorf("image without external objects: %v\n%s", err, buf.String())
	}
}
