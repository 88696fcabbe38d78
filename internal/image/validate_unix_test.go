package image

import (
	"errors"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestValidateUnixSock: the names, listening state and peers of unix
// sockets an image holds are checked before restore binds or connects
// anything.
func TestValidateUnixSock(t *testing.T) {
	path := &UnixAddr{Name: []byte("/run/x.sock"), Path: "/run/x.sock", Mode: 0o755}
	tests := []struct {
		name string
		sock UnixSock
		msg  string // substring of the error; "" means valid
	}{
		{"bound path", UnixSock{Ino: 5, Type: unix.SOCK_DGRAM, Addr: path}, ""},
		{"relative", UnixSock{Ino: 5, Type: unix.SOCK_DGRAM, Addr: &UnixAddr{Name: []byte("s"), Dir: "/tmp", Path: "/tmp/s"}}, ""},
		{"abstract", UnixSock{Ino: 5, Type: unix.SOCK_STREAM, Listen: true, Backlog: 5, Addr: &UnixAddr{Name: []byte("\x00a\x00b")}}, ""},
		{"relative without dir", UnixSock{Ino: 5, Type: unix.SOCK_DGRAM, Addr: &UnixAddr{Name: []byte("s"), Path: "/tmp/s"}}, "want a path name"},
		{"path not the name", UnixSock{Ino: 5, Type: unix.SOCK_DGRAM, Addr: &UnixAddr{Name: []byte("/run/x"), Path: "/etc/shadow"}}, "want a path name"},
		{"dir with ..", UnixSock{Ino: 5, Type: unix.SOCK_DGRAM, Addr: &UnixAddr{Name: []byte("s"), Dir: "/tmp/../etc", Path: "/etc/s"}}, "want a path name"},
		{"NUL in path", UnixSock{Ino: 5, Type: unix.SOCK_DGRAM, Addr: &UnixAddr{Name: []byte("/a\x00b"), Path: "/a"}}, "want a path name"},
		{"setuid mode", UnixSock{Ino: 5, Type: unix.SOCK_DGRAM, Addr: &UnixAddr{Name: []byte("/a"), Path: "/a", Mode: 0o4755}}, "permission bits only"},
		{"name too long", UnixSock{Ino: 5, Type: unix.SOCK_DGRAM, Addr: &UnixAddr{Name: make([]byte, 109)}}, "name of 109 bytes"},
		{"abstract with path", UnixSock{Ino: 5, Type: unix.SOCK_DGRAM, Addr: &UnixAddr{Name: []byte("\x00a"), Path: "/etc/shadow"}}, "abstract name with path"},
		{"listening unnamed", UnixSock{Ino: 5, Type: unix.SOCK_STREAM, Listen: true}, "listening"},
		{"listening dgram", UnixSock{Ino: 5, Type: unix.SOCK_DGRAM, Listen: true, Addr: path}, "listening"},
		{"backlog", UnixSock{Ino: 5, Type: unix.SOCK_STREAM, Listen: true, Backlog: -1, Addr: path}, "listening"},
		{"stream connected by name", UnixSock{Ino: 5, Type: unix.SOCK_STREAM, PeerAddr: path}, "connected by name"},
		{"peer without name", UnixSock{Ino: 5, Peer: 6, Type: unix.SOCK_DGRAM}, "without its name"},
		{"pending not listening", UnixSock{Ino: 5, Type: unix.SOCK_STREAM, Addr: path, Pending: []uint64{5}}, "waiting to be accepted"},
		{"pending above backlog", UnixSock{Ino: 5, Type: unix.SOCK_STREAM, Listen: true, Addr: path, Pending: []uint64{7, 8}}, "waiting to be accepted"},
		{"pending client not in the image", UnixSock{Ino: 5, Type: unix.SOCK_STREAM, Listen: true, Backlog: 1, Addr: path, Pending: []uint64{7}}, "which no fd of the image holds"},
		{"pending on, dgram", UnixSock{Ino: 5, Type: unix.SOCK_DGRAM, PeerAddr: path, PendingOn: 7}, "waiting to be accepted by socket:[7]"},
		{"peer not in the image", UnixSock{Ino: 5, Peer: 6, Type: unix.SOCK_DGRAM, PeerAddr: path}, "which no fd of the image holds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := sampleCheckpoint()
			s := tt.sock
			c.Processes[0].FDs = append(c.Processes[0].FDs, FD{Num: 9, Kind: FDUnix, Sock: &s})
			err := c.Validate()
			if tt.msg == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("Validate() = %v, want ErrCorrupt naming %q", err, tt.msg)
			}
		})
	}
}
