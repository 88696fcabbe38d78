package files

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"unsafe"

	"github.com/rtcr/rtcr/internal/abi"
	"github.com/rtcr/rtcr/internal/procfs"
	"github.com/rtcr/rtcr/internal/ptrace"
	"golang.org/x/sys/unix"
)

// Listener is a listening TCP socket that a process tree holds, as
// sock_diag tells it. A dump lets the tree accept the connections
// waiting in its accept queue before freezing it (a queued connection
// cannot be saved), holding new ones back meanwhile (netlock.Drain).
type Listener struct {
	Pid, FD int // the first fd of the tree found on it
	Ino     uint64
	// Local is its address, an IPv4-mapped one given as IPv4.
	Local netip.AddrPort
	// Queued counts the connections in its accept queue, Handshakes
	// those whose handshake is under way (they join the queue once the
	// client's ACK arrives).
	Queued, Handshakes int
}

// String names the listener for messages.
func (l Listener) String() string {
	return fmt.Sprintf("fd %d (socket:[%d]) of %d: TCP socket %s (LISTEN)", l.FD, l.Ino, l.Pid, l.Local)
}

// TCPListeners returns the listening TCP sockets (of rtcr's network
// namespace) that processes pids hold, each once, with their queues.
func TCPListeners(pids []int) ([]Listener, error) {
	ls, err := listenersOf(pids, func(*Listener) bool { return true })
	if err != nil || len(ls) == 0 {
		return ls, err
	}
	// Only a tree with listeners pays for counting handshakes.
	return ls, UpdateQueues(ls)
}

// QueuedListeners returns the listening TCP sockets that processes pids
// hold with connections in their accept queue (Handshakes not counted).
// The fds are read only when some listener of the namespace has any:
// after the freeze, in the common case, it costs one sock_diag dump of
// listening sockets per family.
func QueuedListeners(pids []int) ([]Listener, error) {
	return listenersOf(pids, func(l *Listener) bool { return l.Queued > 0 })
}

// listenersOf returns the listening TCP sockets that processes pids
// hold for which want holds.
func listenersOf(pids []int, want func(*Listener) bool) ([]Listener, error) {
	diag, err := tcpListenDiag(false)
	if err != nil {
		return nil, err
	}
	for ino, l := range diag.listeners {
		if !want(l) {
			delete(diag.listeners, ino)
		}
	}
	if len(diag.listeners) == 0 {
		return nil, nil
	}
	var out []Listener
	seen := map[uint64]bool{}
	for _, pid := range pids {
		nums, err := procfs.ListFDs(pid)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue // exited: not in the tree any more
			}
			return nil, err
		}
		for _, n := range nums {
			link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%d", pid, n))
			if err != nil {
				continue // closed meanwhile
			}
			s, ok := strings.CutPrefix(link, "socket:[")
			if !ok {
				continue
			}
			ino, err := strconv.ParseUint(strings.TrimSuffix(s, "]"), 10, 64)
			if err != nil || seen[ino] || diag.listeners[ino] == nil {
				continue
			}
			seen[ino] = true
			l := *diag.listeners[ino]
			l.Pid, l.FD = pid, n
			out = append(out, l)
		}
	}
	return out, nil
}

// UpdateQueues sets Queued and Handshakes of every listener of ls to
// what sock_diag tells now; a listener closed meanwhile has none.
func UpdateQueues(ls []Listener) error {
	diag, err := tcpListenDiag(true)
	if err != nil {
		return err
	}
	for i := range ls {
		ls[i].Queued, ls[i].Handshakes = 0, 0
		if d := diag.listeners[ls[i].Ino]; d != nil {
			ls[i].Queued, ls[i].Handshakes = d.Queued, d.Handshakes
		}
	}
	return nil
}

// listenDiag is every listening TCP socket of rtcr's network namespace
// by inode, its handshakes under way counted.
type listenDiag struct {
	listeners map[uint64]*Listener
}

// tcpListenDiag asks sock_diag for the listening TCP sockets, IPv4 and
// IPv6, and with handshakes for the request sockets of handshakes under
// way too, counting each request for every listener of its address and
// port. Asking for listeners alone spares the kernel its walk of the
// whole table of connections (2–4 ms a call on our VMs, even with
// almost no connections: the table is sized by the memory).
func tcpListenDiag(handshakes bool) (*listenDiag, error) {
	d := &listenDiag{listeners: map[uint64]*Listener{}}
	var reqs []netip.AddrPort
	states := uint32(1 << abi.TCP_LISTEN)
	if handshakes {
		states |= 1<<abi.TCP_SYN_RECV | 1<<abi.TCP_NEW_SYN_RECV
	}
	for _, family := range []uint8{unix.AF_INET, unix.AF_INET6} {
		msgs, err := inetDiagDump(family, states)
		if err != nil {
			return nil, err
		}
		for _, m := range msgs {
			local := diagAddr(m.Family, m.ID.Src, m.ID.Sport)
			switch m.State {
			case abi.TCP_LISTEN:
				d.listeners[uint64(m.Inode)] = &Listener{Ino: uint64(m.Inode), Local: local, Queued: int(m.Rqueue)}
			case abi.TCP_SYN_RECV, abi.TCP_NEW_SYN_RECV:
				reqs = append(reqs, local)
			}
		}
	}
	for _, r := range reqs {
		for _, l := range d.listeners {
			if l.Local.Port() == r.Port() && (l.Local.Addr().IsUnspecified() || l.Local.Addr() == r.Addr()) {
				l.Handshakes++
			}
		}
	}
	return d, nil
}

// diagAddr converts an inet_diag address and port (network byte order),
// an IPv4-mapped one to IPv4.
func diagAddr(family uint8, ip [16]byte, port [2]byte) netip.AddrPort {
	p := binary.BigEndian.Uint16(port[:])
	if family == unix.AF_INET {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(ip[:4])), p)
	}
	return netip.AddrPortFrom(netip.AddrFrom16(ip).Unmap(), p)
}

// inetDiagDump asks sock_diag for every TCP socket of family in one of
// states (a bit mask of TCP states).
func inetDiagDump(family uint8, states uint32) ([]abi.InetDiagMsg, error) {
	req := abi.InetDiagReqV2{Family: family, Protocol: unix.IPPROTO_TCP, States: states}
	req.ID.Cookie = [2]uint32{^uint32(0), ^uint32(0)}
	var out []abi.InetDiagMsg
	err := sockDiag(ptrace.Bytes(&req), unix.NLM_F_DUMP, func(data []byte) error {
		var dm abi.InetDiagMsg
		if len(data) < int(unsafe.Sizeof(dm)) {
			return fmt.Errorf("sock_diag answer of %d bytes: %w", len(data), errBadFdinfo)
		}
		copy(ptrace.Bytes(&dm), data)
		out = append(out, dm)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sock_diag of TCP sockets: %w", err)
	}
	return out, nil
}
