package image

import (
	"errors"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// inetFD returns an established IPv4 TCP connection fd as a dump
// records it.
func inetFD() FD {
	return FD{Num: 9, Kind: FDInet, Inet: &InetSock{
		Ino: 77, Family: unix.AF_INET, Type: unix.SOCK_STREAM, State: TCPEstablished, Bound: true,
		Local:  InetAddr{IP: []byte{127, 0, 0, 1}, Port: 8080},
		Remote: InetAddr{IP: []byte{127, 0, 0, 1}, Port: 40000},
		Opts:   []SockOpt{{Level: unix.IPPROTO_TCP, Opt: unix.TCP_NODELAY, Val: []byte{1, 0, 0, 0}}},
		TCP:    &TCPConn{SndSeq: 1, RcvSeq: 2, SndQueue: []byte("abc"), Unsent: 1, Options: TCPIOptSack | TCPIOptWscale, MSS: 1460, SndWscale: 7, RcvWscale: 7},
	}}
}

// TestValidateInet: what an image may say of a TCP or UDP socket is
// bounded before a restore uses it.
func TestValidateInet(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(s *InetSock, c *Checkpoint)
		msg    string
	}{
		{"valid", func(s *InetSock, c *Checkpoint) {}, ""},
		{"valid lock", func(s *InetSock, c *Checkpoint) { c.NetLock = "rtcr_0123456789abcdef" }, ""},
		{"lock of another table", func(s *InetSock, c *Checkpoint) { c.NetLock = "filter" }, "network lock table \"filter\""},
		{"family", func(s *InetSock, c *Checkpoint) { s.Family = unix.AF_PACKET }, "of family 17"},
		{"address length", func(s *InetSock, c *Checkpoint) { s.Local.IP = make([]byte, 16) }, "address of 16 bytes"},
		{"port", func(s *InetSock, c *Checkpoint) { s.Remote.Port = 70000 }, "port 70000"},
		{"negative port", func(s *InetSock, c *Checkpoint) { s.Local.Port = -1 }, "port -1"},
		{"raw type", func(s *InetSock, c *Checkpoint) { s.Type = unix.SOCK_RAW }, "of type 3"},
		{"state", func(s *InetSock, c *Checkpoint) { s.State = 4 }, "in state 4"},
		{"established without repair state", func(s *InetSock, c *Checkpoint) { s.TCP = nil }, "without both addresses or its state"},
		{"repair state on a listener", func(s *InetSock, c *Checkpoint) { s.State, s.Remote = TCPListen, InetAddr{} }, "TCP repair state on a socket in state 10"},
		{"backlog", func(s *InetSock, c *Checkpoint) { s.State, s.TCP, s.Backlog = TCPListen, nil, 1<<20 }, "backlog 1048576"},
		{"unbound with an address", func(s *InetSock, c *Checkpoint) { s.State, s.TCP, s.Remote, s.Bound = TCPClose, nil, InetAddr{}, false }, "bound false"},
		{"unknown option", func(s *InetSock, c *Checkpoint) {
			s.Opts = append(s.Opts, SockOpt{Level: unix.SOL_SOCKET, Opt: unix.SO_PEEK_OFF, Val: []byte{1, 0, 0, 0}})
		}, "socket option 1/42"},
		{"SO_MARK", func(s *InetSock, c *Checkpoint) {
			s.Opts = append(s.Opts, SockOpt{Level: unix.SOL_SOCKET, Opt: unix.SO_MARK, Val: []byte{1, 0, 0, 0}})
		}, ""},
		{"SO_BINDTODEVICE", func(s *InetSock, c *Checkpoint) {
			s.Opts = append(s.Opts, SockOpt{Level: unix.SOL_SOCKET, Opt: unix.SO_BINDTODEVICE, Val: []byte("eth0\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00")})
		}, ""},
		{"SO_BINDTODEVICE with a slash", func(s *InetSock, c *Checkpoint) {
			s.Opts = append(s.Opts, SockOpt{Level: unix.SOL_SOCKET, Opt: unix.SO_BINDTODEVICE, Val: []byte("../x\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00")})
		}, "not an interface name"},
		{"SO_BINDTODEVICE without its NUL", func(s *InetSock, c *Checkpoint) {
			s.Opts = append(s.Opts, SockOpt{Level: unix.SOL_SOCKET, Opt: unix.SO_BINDTODEVICE, Val: []byte("0123456789abcdef")})
		}, "not an interface name"},
		{"SO_BINDTODEVICE with bytes after the NUL", func(s *InetSock, c *Checkpoint) {
			s.Opts = append(s.Opts, SockOpt{Level: unix.SOL_SOCKET, Opt: unix.SO_BINDTODEVICE, Val: []byte("lo\x00x\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00")})
		}, "not an interface name"},
		{"SO_BINDTODEVICE empty", func(s *InetSock, c *Checkpoint) {
			s.Opts = append(s.Opts, SockOpt{Level: unix.SOL_SOCKET, Opt: unix.SO_BINDTODEVICE, Val: make([]byte, 16)})
		}, "not an interface name"},
		{"option of another family", func(s *InetSock, c *Checkpoint) {
			s.Opts = append(s.Opts, SockOpt{Level: unix.IPPROTO_IPV6, Opt: unix.IPV6_V6ONLY, Val: []byte{1, 0, 0, 0}})
		}, "socket option 41/26"},
		{"option size", func(s *InetSock, c *Checkpoint) { s.Opts[0].Val = make([]byte, 4096) }, "of 4096 bytes"},
		{"send queue too big", func(s *InetSock, c *Checkpoint) { s.TCP.SndQueue = make([]byte, MaxMemfdData+1) }, "TCP queues of 16777217"},
		{"unsent beyond the queue", func(s *InetSock, c *Checkpoint) { s.TCP.Unsent = 4 }, "4 unsent"},
		{"window scale", func(s *InetSock, c *Checkpoint) { s.TCP.SndWscale = 15 }, "window scales 15/7"},
		{"MSS", func(s *InetSock, c *Checkpoint) { s.TCP.MSS = 0 }, "MSS 0"},
		{"unknown TCP option", func(s *InetSock, c *Checkpoint) { s.TCP.Options |= 8 }, "TCP options 0xe"},
		{"connected UDP without a peer", func(s *InetSock, c *Checkpoint) { s.Type, s.TCP, s.Remote = unix.SOCK_DGRAM, nil, InetAddr{} }, "connected UDP socket without a peer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := sampleCheckpoint()
			fd := inetFD()
			tt.mutate(fd.Inet, c)
			c.Processes[0].FDs = append(c.Processes[0].FDs, fd)
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

// TestCheckInetOwner: a port below 1024 needs CAP_NET_BIND_SERVICE and an
// established connection CAP_NET_ADMIN of the image owner (not root).
func TestCheckInetOwner(t *testing.T) {
	sys := System{PidMax: 1 << 22, NrOpen: 1 << 20}
	tests := []struct {
		name  string
		port  int
		tcp   bool
		caps  uint64
		owner bool // root
		msg   string
		opt   []SockOpt
	}{
		{"high port, listener", 8080, false, 0, false, "", nil},
		{"low port without the capability", 80, false, 0, false, "port 80 below 1024 without CAP_NET_BIND_SERVICE", nil},
		{"low port with the capability", 80, false, 1 << capNetBindService, false, "", nil},
		{"connection without CAP_NET_ADMIN", 8080, true, 0, false, "without CAP_NET_ADMIN", nil},
		{"connection with CAP_NET_ADMIN", 8080, true, 1 << capNetAdmin, false, "", nil},
		{"root owner", 80, true, 0, true, "", nil},
		{"SO_MARK without CAP_NET_ADMIN", 8080, false, 0, false, "SO_MARK 5 without CAP_NET_ADMIN", []SockOpt{{unix.SOL_SOCKET, unix.SO_MARK, []byte{5, 0, 0, 0}}}},
		{"SO_MARK with CAP_NET_ADMIN", 8080, false, 1 << capNetAdmin, false, "", []SockOpt{{unix.SOL_SOCKET, unix.SO_MARK, []byte{5, 0, 0, 0}}}},
		{"SO_PRIORITY 7 without CAP_NET_ADMIN", 8080, false, 0, false, "SO_PRIORITY 7 without CAP_NET_ADMIN", []SockOpt{{unix.SOL_SOCKET, unix.SO_PRIORITY, []byte{7, 0, 0, 0}}}},
		{"SO_PRIORITY 6", 8080, false, 0, false, "", []SockOpt{{unix.SOL_SOCKET, unix.SO_PRIORITY, []byte{6, 0, 0, 0}}}},
		{"SO_MARK, root owner", 8080, false, 0, true, "", []SockOpt{{unix.SOL_SOCKET, unix.SO_MARK, []byte{5, 0, 0, 0}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := sampleCheckpoint()
			p := &c.Processes[0]
			var cr Creds
			cr.Uid, cr.Euid, cr.Suid, cr.Fsuid = 1000, 1000, 1000, 1000
			cr.Gid, cr.Egid, cr.Sgid, cr.Fsgid, cr.Groups = 1000, 1000, 1000, 1000, nil
			cr.CapPrm, cr.CapEff, cr.CapInh, cr.CapAmb = 0, 0, 0, 0
			p.Creds = &cr
			fd := inetFD()
			fd.Inet.Local.Port = tt.port
			if !tt.tcp {
				fd.Inet.State, fd.Inet.TCP, fd.Inet.Remote = TCPListen, nil, InetAddr{}
			}
			fd.Inet.Opts = append(fd.Inet.Opts, tt.opt...)
			p.FDs = append(p.FDs, fd)
			err := c.CheckRestore(sys, Owner{Root: tt.owner, Uid: 1000, Gids: []uint32{1000}, Caps: tt.caps})
			if tt.msg == "" {
				if err != nil {
					t.Fatalf("CheckRestore() = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("CheckRestore() = %v, want ErrUntrusted naming %q", err, tt.msg)
			}
		})
	}
}
