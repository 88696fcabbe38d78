package image

import (
	"encoding/binary"
	"fmt"
	"regexp"

	"golang.org/x/sys/unix"
)

// FDInet is a TCP or UDP socket, IPv4 or IPv6.
const FDInet = "inet"

// TCP states an InetSock may have (include/net/tcp_states.h); a UDP
// socket is TCPEstablished when connected, else TCPClose.
const (
	TCPEstablished = 1
	TCPClose       = 7
	TCPListen      = 10
)

// InetSock is a TCP or UDP socket: Family AF_INET or AF_INET6, Type
// SOCK_STREAM (TCP) or SOCK_DGRAM (UDP), its state, its local address
// (Bound: it had one, by bind or connect) and, when connected, its peer.
// Backlog is a listening socket's. Opts are the options that differ from
// a new socket's (one of SockOpts each). TCP is an established TCP
// connection's repair state. Ino is the socket's inode at dump: the fds
// on one inode are one socket, whose state only the first carries.
type InetSock struct {
	Ino     uint64
	Family  int
	Type    int
	State   int
	Bound   bool      `json:",omitempty"`
	Local   InetAddr  `json:",omitempty"`
	Remote  InetAddr  `json:",omitempty"`
	Backlog int       `json:",omitempty"`
	Opts    []SockOpt `json:",omitempty"`
	TCP     *TCPConn  `json:",omitempty"`
}

// InetAddr is an IP address (4 bytes for AF_INET, 16 for AF_INET6) and
// a port.
type InetAddr struct {
	IP   []byte `json:",omitempty"`
	Port int    `json:",omitempty"`
}

// SockOpt is one socket option as getsockopt returned it and setsockopt
// takes it back (SO_SNDBUF and SO_RCVBUF: the doubled value getsockopt
// shows).
type SockOpt struct {
	Level, Opt int
	Val        []byte
}

// TCPConn is the state of an established TCP connection that TCP_REPAIR
// restores: the sequence numbers at the end of the send queue
// (write_seq) and of the receive queue (rcv_nxt), the bytes of the send
// queue from the first unacknowledged one (the last Unsent of them never
// sent) and of the receive queue not read yet, the options negotiated
// (TCPI_OPT_* bits, MSS clamp, window scales), the timestamp clock
// (TCP_TIMESTAMP) and the windows (TCP_REPAIR_WINDOW).
type TCPConn struct {
	SndSeq, RcvSeq       uint32
	SndQueue             []byte `json:",omitempty"`
	Unsent               int    `json:",omitempty"`
	RcvQueue             []byte `json:",omitempty"`
	Options              int
	MSS                  int
	SndWscale, RcvWscale int    `json:",omitempty"`
	Timestamp            uint32 `json:",omitempty"`
	SndWl1, SndWnd       uint32
	MaxWindow            uint32
	RcvWnd, RcvWup       uint32
}

// SoBufLock is SO_BUF_LOCK (Linux 5.14, not in x/sys/unix yet): which of
// the send (SockSndbufLock) and receive (SockRcvbufLock) buffer sizes the
// program fixed, the others being autotuned by the kernel.
const (
	SoBufLock      = 72
	SockSndbufLock = 1
	SockRcvbufLock = 2
)

// TCPI_OPT_* bits of TCPConn.Options restore knows (linux/tcp.h).
const (
	TCPIOptTimestamps = 1
	TCPIOptSack       = 2
	TCPIOptWscale     = 4
)

// SockOptSpec is a socket option restore sets again: its level and
// number, the families and types it applies to (0: all), and the size of
// its value.
type SockOptSpec struct {
	Name       string
	Level, Opt int
	Family     int // 0, AF_INET or AF_INET6
	Type       int // 0, SOCK_STREAM or SOCK_DGRAM
	Size       int
}

// SockOpts are the options of TCP and UDP sockets rtcr saves when they
// differ from a new socket's and sets again (table in internal/files).
// SO_BINDTODEVICE is the interface name, NUL-padded to 16 bytes (an
// interface of that name must exist at restore); SO_MARK and SO_PRIORITY
// above 6 need CAP_NET_ADMIN of the image owner (checkInet).
var SockOpts = []SockOptSpec{
	{"SO_REUSEADDR", unix.SOL_SOCKET, unix.SO_REUSEADDR, 0, 0, 4},
	{"SO_REUSEPORT", unix.SOL_SOCKET, unix.SO_REUSEPORT, 0, 0, 4},
	{"SO_KEEPALIVE", unix.SOL_SOCKET, unix.SO_KEEPALIVE, 0, 0, 4},
	{"SO_BROADCAST", unix.SOL_SOCKET, unix.SO_BROADCAST, 0, 0, 4},
	{"SO_DONTROUTE", unix.SOL_SOCKET, unix.SO_DONTROUTE, 0, 0, 4},
	{"SO_OOBINLINE", unix.SOL_SOCKET, unix.SO_OOBINLINE, 0, 0, 4},
	{"SO_PRIORITY", unix.SOL_SOCKET, unix.SO_PRIORITY, 0, 0, 4},
	{"SO_RCVLOWAT", unix.SOL_SOCKET, unix.SO_RCVLOWAT, 0, 0, 4},
	{"SO_TIMESTAMP", unix.SOL_SOCKET, unix.SO_TIMESTAMP, 0, 0, 4},
	{"SO_TIMESTAMPNS", unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 0, 0, 4},
	{"SO_LINGER", unix.SOL_SOCKET, unix.SO_LINGER, 0, 0, 8},
	{"SO_RCVTIMEO", unix.SOL_SOCKET, unix.SO_RCVTIMEO, 0, 0, 16},
	{"SO_SNDTIMEO", unix.SOL_SOCKET, unix.SO_SNDTIMEO, 0, 0, 16},
	{"SO_SNDBUF", unix.SOL_SOCKET, unix.SO_SNDBUF, 0, 0, 4},
	{"SO_RCVBUF", unix.SOL_SOCKET, unix.SO_RCVBUF, 0, 0, 4},
	{"SO_BUF_LOCK", unix.SOL_SOCKET, SoBufLock, 0, 0, 4},
	{"SO_MARK", unix.SOL_SOCKET, unix.SO_MARK, 0, 0, 4},
	{"SO_BINDTODEVICE", unix.SOL_SOCKET, unix.SO_BINDTODEVICE, 0, 0, 16},
	{"SO_NO_CHECK", unix.SOL_SOCKET, unix.SO_NO_CHECK, 0, 0, 4},
	{"SO_ZEROCOPY", unix.SOL_SOCKET, unix.SO_ZEROCOPY, 0, 0, 4},
	{"SO_MAX_PACING_RATE", unix.SOL_SOCKET, unix.SO_MAX_PACING_RATE, 0, 0, 8},
	{"TCP_NODELAY", unix.IPPROTO_TCP, unix.TCP_NODELAY, 0, unix.SOCK_STREAM, 4},
	{"TCP_CORK", unix.IPPROTO_TCP, unix.TCP_CORK, 0, unix.SOCK_STREAM, 4},
	{"TCP_KEEPIDLE", unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, 0, unix.SOCK_STREAM, 4},
	{"TCP_KEEPINTVL", unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, 0, unix.SOCK_STREAM, 4},
	{"TCP_KEEPCNT", unix.IPPROTO_TCP, unix.TCP_KEEPCNT, 0, unix.SOCK_STREAM, 4},
	{"TCP_USER_TIMEOUT", unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, 0, unix.SOCK_STREAM, 4},
	{"TCP_SYNCNT", unix.IPPROTO_TCP, unix.TCP_SYNCNT, 0, unix.SOCK_STREAM, 4},
	{"TCP_LINGER2", unix.IPPROTO_TCP, unix.TCP_LINGER2, 0, unix.SOCK_STREAM, 4},
	{"TCP_DEFER_ACCEPT", unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, 0, unix.SOCK_STREAM, 4},
	{"TCP_NOTSENT_LOWAT", unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT, 0, unix.SOCK_STREAM, 4},
	{"TCP_THIN_LINEAR_TIMEOUTS", unix.IPPROTO_TCP, unix.TCP_THIN_LINEAR_TIMEOUTS, 0, unix.SOCK_STREAM, 4},
	{"TCP_FASTOPEN", unix.IPPROTO_TCP, unix.TCP_FASTOPEN, 0, unix.SOCK_STREAM, 4},
	{"TCP_CONGESTION", unix.IPPROTO_TCP, unix.TCP_CONGESTION, 0, unix.SOCK_STREAM, 16},
	{"UDP_CORK", unix.IPPROTO_UDP, unix.UDP_CORK, 0, unix.SOCK_DGRAM, 4},
	{"UDP_SEGMENT", unix.IPPROTO_UDP, unix.UDP_SEGMENT, 0, unix.SOCK_DGRAM, 4},
	{"UDP_GRO", unix.IPPROTO_UDP, unix.UDP_GRO, 0, unix.SOCK_DGRAM, 4},
	{"IP_TOS", unix.IPPROTO_IP, unix.IP_TOS, unix.AF_INET, 0, 4},
	{"IP_TTL", unix.IPPROTO_IP, unix.IP_TTL, unix.AF_INET, 0, 4},
	{"IP_MTU_DISCOVER", unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.AF_INET, 0, 4},
	{"IP_RECVERR", unix.IPPROTO_IP, unix.IP_RECVERR, unix.AF_INET, 0, 4},
	{"IP_PKTINFO", unix.IPPROTO_IP, unix.IP_PKTINFO, unix.AF_INET, 0, 4},
	{"IP_RECVTOS", unix.IPPROTO_IP, unix.IP_RECVTOS, unix.AF_INET, 0, 4},
	{"IP_RECVTTL", unix.IPPROTO_IP, unix.IP_RECVTTL, unix.AF_INET, 0, 4},
	{"IP_FREEBIND", unix.IPPROTO_IP, unix.IP_FREEBIND, unix.AF_INET, 0, 4},
	{"IP_BIND_ADDRESS_NO_PORT", unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, unix.AF_INET, 0, 4},
	{"IP_MULTICAST_TTL", unix.IPPROTO_IP, unix.IP_MULTICAST_TTL, unix.AF_INET, unix.SOCK_DGRAM, 4},
	{"IP_MULTICAST_LOOP", unix.IPPROTO_IP, unix.IP_MULTICAST_LOOP, unix.AF_INET, unix.SOCK_DGRAM, 4},
	{"IPV6_V6ONLY", unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, unix.AF_INET6, 0, 4},
	{"IPV6_UNICAST_HOPS", unix.IPPROTO_IPV6, unix.IPV6_UNICAST_HOPS, unix.AF_INET6, 0, 4},
	{"IPV6_TCLASS", unix.IPPROTO_IPV6, unix.IPV6_TCLASS, unix.AF_INET6, 0, 4},
	{"IPV6_MTU_DISCOVER", unix.IPPROTO_IPV6, unix.IPV6_MTU_DISCOVER, unix.AF_INET6, 0, 4},
	{"IPV6_RECVERR", unix.IPPROTO_IPV6, unix.IPV6_RECVERR, unix.AF_INET6, 0, 4},
	{"IPV6_RECVPKTINFO", unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, unix.AF_INET6, 0, 4},
	{"IPV6_MULTICAST_HOPS", unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_HOPS, unix.AF_INET6, unix.SOCK_DGRAM, 4},
	{"IPV6_MULTICAST_LOOP", unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_LOOP, unix.AF_INET6, unix.SOCK_DGRAM, 4},
}

// FindSockOpt returns the entry of SockOpts for level and opt, nil if
// there is none.
func FindSockOpt(level, opt int) *SockOptSpec {
	for i := range SockOpts {
		if SockOpts[i].Level == level && SockOpts[i].Opt == opt {
			return &SockOpts[i]
		}
	}
	return nil
}

// Applies reports whether option o exists on sockets of family and typ.
func (o *SockOptSpec) Applies(family, typ int) bool {
	return (o.Family == 0 || o.Family == family) && (o.Type == 0 || o.Type == typ)
}

// netLockRe is what a network lock's table is named: rtcr_ and the
// dump's generation.
var netLockRe = regexp.MustCompile(`^rtcr_[0-9a-f]{16}$`)

// NetLockName returns the name of the nftables table of the network
// lock of the dump of generation gen.
func NetLockName(gen string) string { return "rtcr_" + gen }

// ValidNetLock reports whether name can name a network lock's table
// (restore deletes that table: an image must not name another).
func ValidNetLock(name string) bool { return netLockRe.MatchString(name) }

// maxBacklog bounds a listening socket's backlog (somaxconn's maximum).
const maxBacklog = 1 << 16

// validateInet checks a TCP or UDP socket of an image: family, type,
// state, address lengths, ports, options (each one of SockOpts with its
// size, SO_BINDTODEVICE an interface name) and queues (at most
// MaxMemfdData bytes each).
func validateInet(fd *FD) error {
	s := fd.Inet
	if s == nil || s.Ino == 0 {
		return fmt.Errorf("without a socket")
	}
	alen := 4
	switch s.Family {
	case unix.AF_INET:
	case unix.AF_INET6:
		alen = 16
	default:
		return fmt.Errorf("of family %d", s.Family)
	}
	for _, a := range []InetAddr{s.Local, s.Remote} {
		if (len(a.IP) != 0 && len(a.IP) != alen) || a.Port < 0 || a.Port > 65535 {
			return fmt.Errorf("address of %d bytes, port %d (family %d)", len(a.IP), a.Port, s.Family)
		}
	}
	connected := len(s.Remote.IP) == alen && s.Remote.Port != 0
	switch {
	case s.Type == unix.SOCK_STREAM && s.State == TCPEstablished:
		if !connected || !s.Bound || s.TCP == nil {
			return fmt.Errorf("established TCP connection without both addresses or its state")
		}
	case s.Type == unix.SOCK_STREAM && s.State == TCPListen:
		if !s.Bound || s.Backlog < 0 || s.Backlog > maxBacklog {
			return fmt.Errorf("listening TCP socket unbound or with backlog %d", s.Backlog)
		}
	case s.Type == unix.SOCK_STREAM && s.State == TCPClose, s.Type == unix.SOCK_DGRAM && s.State == TCPClose:
	case s.Type == unix.SOCK_DGRAM && s.State == TCPEstablished:
		if !connected {
			return fmt.Errorf("connected UDP socket without a peer")
		}
	default:
		return fmt.Errorf("of type %d in state %d", s.Type, s.State)
	}
	if s.TCP != nil && s.State != TCPEstablished {
		return fmt.Errorf("TCP repair state on a socket in state %d", s.State)
	}
	if (s.Bound && len(s.Local.IP) != alen) || (!s.Bound && (len(s.Local.IP) != 0 || s.Local.Port != 0)) {
		return fmt.Errorf("local address of %d bytes, bound %v", len(s.Local.IP), s.Bound)
	}
	for _, o := range s.Opts {
		spec := FindSockOpt(o.Level, o.Opt)
		if spec == nil || !spec.Applies(s.Family, s.Type) || len(o.Val) != spec.Size {
			return fmt.Errorf("socket option %d/%d of %d bytes", o.Level, o.Opt, len(o.Val))
		}
		if o.Level == unix.SOL_SOCKET && o.Opt == unix.SO_BINDTODEVICE && !validIfName(o.Val) {
			return fmt.Errorf("SO_BINDTODEVICE %q: not an interface name", o.Val)
		}
	}
	if t := s.TCP; t != nil {
		if len(t.SndQueue) > MaxMemfdData || len(t.RcvQueue) > MaxMemfdData || t.Unsent < 0 || t.Unsent > len(t.SndQueue) {
			return fmt.Errorf("TCP queues of %d and %d bytes, %d unsent", len(t.SndQueue), len(t.RcvQueue), t.Unsent)
		}
		if t.MSS <= 0 || t.MSS > 65535 || t.SndWscale < 0 || t.SndWscale > 14 || t.RcvWscale < 0 || t.RcvWscale > 14 ||
			t.Options&^(TCPIOptTimestamps|TCPIOptSack|TCPIOptWscale) != 0 {
			return fmt.Errorf("TCP options %#x, MSS %d, window scales %d/%d", t.Options, t.MSS, t.SndWscale, t.RcvWscale)
		}
	}
	return nil
}

// validIfName reports whether v, a SO_BINDTODEVICE value, is an interface
// name NUL-padded to 16 bytes: 1 to 15 bytes of printable ASCII other
// than '/', ':' and white space (what dev_valid_name accepts, narrowed),
// not "." or "..", then NULs only.
func validIfName(v []byte) bool {
	n := 0
	for n < len(v) && v[n] != 0 {
		n++
	}
	if n == 0 || n >= len(v) || string(v[:n]) == "." || string(v[:n]) == ".." {
		return false
	}
	for i, b := range v {
		if i < n && (b <= ' ' || b >= 0x7f || b == '/' || b == ':') || i >= n && b != 0 {
			return false
		}
	}
	return true
}

// needsNetAdmin names the option of s that only CAP_NET_ADMIN may set
// (SO_MARK, SO_PRIORITY above 6), "" if none.
func needsNetAdmin(s *InetSock) string {
	for _, o := range s.Opts {
		if o.Level != unix.SOL_SOCKET || len(o.Val) != 4 {
			continue
		}
		v := binary.NativeEndian.Uint32(o.Val)
		switch {
		case o.Opt == unix.SO_MARK && v != 0:
			return fmt.Sprintf("SO_MARK %d", v)
		case o.Opt == unix.SO_PRIORITY && v > 6:
			return fmt.Sprintf("SO_PRIORITY %d", v)
		}
	}
	return ""
}

// CAP_NET_BIND_SERVICE and CAP_NET_ADMIN (linux/capability.h).
const (
	capNetBindService = 10
	capNetAdmin       = 12
)

// checkInet checks the TCP and UDP sockets of p against what owner had:
// a port below 1024 needs CAP_NET_BIND_SERVICE, an established TCP
// connection (restored with TCP_REPAIR, which sets sequence numbers and
// addresses without a handshake) CAP_NET_ADMIN, and so do SO_MARK and
// SO_PRIORITY above 6 (rtcr sets them as root).
func checkInet(p *Process, owner Owner) error {
	if owner.Root {
		return nil
	}
	for i := range p.FDs {
		s := p.FDs[i].Inet
		if s == nil {
			continue
		}
		if s.Bound && s.Local.Port != 0 && s.Local.Port < 1024 && owner.Caps&(1<<capNetBindService) == 0 {
			return fmt.Errorf("fd %d: port %d below 1024 without CAP_NET_BIND_SERVICE (uid %d)", p.FDs[i].Num, s.Local.Port, owner.Uid)
		}
		if s.TCP != nil && owner.Caps&(1<<capNetAdmin) == 0 {
			return fmt.Errorf("fd %d: established TCP connection (restored with TCP_REPAIR) without CAP_NET_ADMIN (uid %d)", p.FDs[i].Num, owner.Uid)
		}
		if o := needsNetAdmin(s); o != "" && owner.Caps&(1<<capNetAdmin) == 0 {
			return fmt.Errorf("fd %d: socket option %s without CAP_NET_ADMIN (uid %d)", p.FDs[i].Num, o, owner.Uid)
		}
	}
	return nil
}
