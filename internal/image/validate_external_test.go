package image

import (
	"errors"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestValidateExternal: external fds read from an image are checked
// (their ID is exactly what their type and inode give, sizes bounded,
// one state per object) before restore uses them.
func TestValidateExternal(t *testing.T) {
	pipe := func() FD {
		return FD{Num: 5, Kind: FDExternal, External: &External{ID: "pipe:[77]", Type: ExtPipe, Ino: 77, PipeSize: 4096, Data: []byte("abc")}}
	}
	sock := func() FD {
		return FD{Num: 6, Kind: FDExternal, Flags: unix.O_RDWR, External: &External{ID: "socket:[78]", Type: ExtSocket, Ino: 78, SockType: unix.SOCK_STREAM,
			Sock: &UnixSockState{Queue: [][]byte{[]byte("q")}, SndBuf: 4096, RcvBuf: 4096, PeekOff: -1}}}
	}
	tests := []struct {
		name string
		fds  func() []FD
		msg  string
	}{
		{"pipe and socket", func() []FD { return []FD{pipe(), sock()} }, ""},
		{"no object", func() []FD { f := pipe(); f.External = nil; return []FD{f} }, "fd 5: external without an object"},
		{"ID of another inode", func() []FD { f := pipe(); f.External.ID = "pipe:[78]"; return []FD{f} }, `ID "pipe:[78]" of a "pipe" with inode 77`},
		{"ID not the form", func() []FD { f := pipe(); f.External.ID = "/etc/passwd"; return []FD{f} }, `ID "/etc/passwd"`},
		{"unknown type", func() []FD {
			f := pipe()
			f.External.Type, f.External.ID = "fifo", "fifo:[77]"
			return []FD{f}
		}, `unknown type "fifo"`},
		{"pipe data beyond its size", func() []FD { f := pipe(); f.External.PipeSize = 2; return []FD{f} }, "pipe of 2 bytes with 3 buffered"},
		{"pipe too large", func() []FD { f := pipe(); f.External.PipeSize = 1 << 30; return []FD{f} }, "pipe of 1073741824 bytes"},
		{"pipe with socket state", func() []FD { f := pipe(); f.External.Sock = &UnixSockState{}; return []FD{f} }, "pipe of 4096 bytes"},
		{"socket type", func() []FD { f := sock(); f.External.SockType = unix.SOCK_RDM; return []FD{f} }, "socket of type 4"},
		{"socket with pipe bytes", func() []FD { f := sock(); f.External.Data = []byte("x"); return []FD{f} }, "1 pipe bytes"},
		{"socket queue too large", func() []FD {
			f := sock()
			f.External.Sock.Queue = [][]byte{make([]byte, MaxMemfdData), []byte("x")}
			return []FD{f}
		}, "16777217 bytes queued"},
		{"empty message", func() []FD { f := sock(); f.External.Sock.Queue = [][]byte{{}}; return []FD{f} }, "an empty message"},
		{"negative peek offset", func() []FD { f := sock(); f.External.Sock.PeekOff = -2; return []FD{f} }, "peek offset -2"},
		{"shared", func() []FD { f := pipe(); f.Shared = 1; return []FD{f} }, "shared open file id 1"},
		{"second fd with the bytes", func() []FD { f, g := pipe(), pipe(); g.Num = 9; return []FD{f, g} }, "fd 9: pipe:[77] differs from its first fd or holds buffered bytes"},
		{"second fd of another socket type", func() []FD {
			f, g := sock(), sock()
			g.Num, g.External.Sock, g.External.SockType = 9, nil, unix.SOCK_DGRAM
			return []FD{f, g}
		}, "fd 9: socket:[78] differs"},
		{"second fd without state", func() []FD {
			f, g := sock(), sock()
			g.Num, g.External.Sock = 9, nil
			return []FD{f, g}
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := sampleCheckpoint()
			c.Processes[0].FDs = append(c.Processes[0].FDs, tt.fds()...)
			err := c.Validate()
			if tt.msg == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tt.msg) || !strings.Contains(err.Error(), "pid 4242") {
				t.Fatalf("Validate() = %v, want ErrCorrupt naming pid 4242 and %q", err, tt.msg)
			}
		})
	}
}
