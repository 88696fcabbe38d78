package files

import (
	"fmt"
	"net/netip"
	"time"
	"unsafe"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/netlock"
	"github.com/rtcr/rtcr/internal/procfs"
	"golang.org/x/sys/unix"
)

// inetKind covers TCP and UDP sockets, IPv4 and IPv6, in rtcr's network
// namespace: unconnected and bound sockets, listening TCP sockets (with
// no connection waiting to be accepted: the dump lets the program accept
// them before the freeze, see drain_linux.go), established TCP connections
// (TCP_REPAIR, see tcprepair_linux.go) and UDP sockets, bound and
// connected, with no datagram queued. rtcr reads everything on a
// pidfd_getfd copy of the socket (nothing is injected); restore creates
// the socket with an injected socket() in the stub and does the rest on
// rtcr's pidfd_getfd copy of it. The options of image.SockOpts that
// differ from a new socket's are saved and set again; the options of
// refusedOpts must have a new socket's value.
var inetKind = kind{
	dump:  dumpInet,
	check: func(fd *image.FD) error { return nil },
	open:  openInet,
}

// tcpStates names the TCP states (include/net/tcp_states.h) for messages.
var tcpStates = []string{1: "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT", "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING", "NEW_SYN_RECV", "BOUND_INACTIVE"}

func stateName(st int) string {
	if st > 0 && st < len(tcpStates) {
		return tcpStates[st]
	}
	return fmt.Sprintf("state %d", st)
}

// inetTree is what the fd dump of a tree knows of its TCP and UDP
// sockets: the network lock's table (empty: none) and the sockets it
// covers, and rtcr's copies of the established connections, kept until
// the tree is released or killed.
type inetTree struct {
	lock        string
	keeper      *netlock.Keeper // renews lock's lease until release or kill
	locked      map[uint64]bool
	established bool // some socket locked is an established connection
	held        map[uint64]*heldConn
	// saved holds the state of each socket dumped (by inode): the
	// other fds on it (dup, fork) share it.
	saved map[uint64]*image.InetSock
	descs map[uint64]string
}

// heldConn is rtcr's copy of an established connection of the tree and
// its SO_REUSEADDR (TCP_REPAIR resets it).
type heldConn struct {
	fd    int
	reuse int
}

// inetCopy is rtcr's copy of a TCP or UDP socket with what getsockopt
// tells of it.
type inetCopy struct {
	fd                 int
	family, typ, proto int
	state              int
	local, remote      netip.AddrPort
	bound              bool
	info               [232]byte // struct tcp_info (TCP only)
}

// probeInet returns rtcr's copy of fd s when it is a TCP or UDP socket
// (ok false for other fds, a socket of another protocol of an inet family
// included: the dump refuses those naming them); a socket of another
// network namespace is an error.
func probeInet(dup int) (c *inetCopy, ok bool, err error) {
	c = &inetCopy{fd: dup}
	if c.family, err = unix.GetsockoptInt(dup, unix.SOL_SOCKET, unix.SO_DOMAIN); err != nil || (c.family != unix.AF_INET && c.family != unix.AF_INET6) {
		return nil, false, nil
	}
	if c.typ, err = unix.GetsockoptInt(dup, unix.SOL_SOCKET, unix.SO_TYPE); err != nil {
		return nil, false, fmt.Errorf("getsockopt SO_TYPE: %w", err)
	}
	if c.proto, err = unix.GetsockoptInt(dup, unix.SOL_SOCKET, unix.SO_PROTOCOL); err != nil {
		return nil, false, fmt.Errorf("getsockopt SO_PROTOCOL: %w", err)
	}
	if !(c.typ == unix.SOCK_STREAM && c.proto == unix.IPPROTO_TCP) && !(c.typ == unix.SOCK_DGRAM && c.proto == unix.IPPROTO_UDP) {
		return nil, false, nil // refused naming its family, type and protocol (refuse_linux.go)
	}
	if err := sameNetns(dup); err != nil {
		return nil, false, err
	}
	sa, err := unix.Getsockname(dup)
	if err != nil {
		return nil, false, fmt.Errorf("getsockname: %w", err)
	}
	c.local = addrPort(sa)
	c.bound = c.local.Port() != 0 || !c.local.Addr().IsUnspecified()
	if sa, err := unix.Getpeername(dup); err == nil {
		c.remote = addrPort(sa)
	}
	if c.proto == unix.IPPROTO_TCP {
		l := uint32(len(c.info))
		if _, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(dup), unix.IPPROTO_TCP, unix.TCP_INFO, uintptr(unsafe.Pointer(&c.info[0])), uintptr(unsafe.Pointer(&l)), 0); e != 0 {
			return nil, false, fmt.Errorf("getsockopt TCP_INFO: %w", e)
		}
		c.state = int(c.info[0])
	} else if c.remote.IsValid() {
		c.state = image.TCPEstablished
	} else {
		c.state = image.TCPClose
	}
	return c, true, nil
}

func familyName(f int) string {
	if f == unix.AF_INET6 {
		return "IPv6"
	}
	return "IPv4"
}

// sameNetns refuses a socket of another network namespace than rtcr's.
func sameNetns(fd int) error {
	ns, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCGSKNS, 0)
	if e != 0 {
		return fmt.Errorf("ioctl SIOCGSKNS: %w", e)
	}
	defer unix.Close(int(ns))
	var a, b unix.Stat_t
	if err := unix.Fstat(int(ns), &a); err != nil {
		return err
	}
	if err := unix.Stat("/proc/self/ns/net", &b); err != nil {
		return err
	}
	if a.Ino != b.Ino || a.Dev != b.Dev {
		return fmt.Errorf("socket in network namespace net:[%d], not rtcr's net:[%d]: %w", a.Ino, b.Ino, ErrUnsupported)
	}
	return nil
}

// addrPort converts a socket address.
func addrPort(sa unix.Sockaddr) netip.AddrPort {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr), uint16(a.Port))
	}
	return netip.AddrPort{}
}

// toImage and fromImage convert addresses for the image.
func toImage(a netip.AddrPort) image.InetAddr {
	if !a.IsValid() {
		return image.InetAddr{}
	}
	return image.InetAddr{IP: a.Addr().AsSlice(), Port: int(a.Port())}
}

func sockaddr(family int, a image.InetAddr) unix.Sockaddr {
	if family == unix.AF_INET {
		sa := &unix.SockaddrInet4{Port: a.Port}
		copy(sa.Addr[:], a.IP)
		return sa
	}
	sa := &unix.SockaddrInet6{Port: a.Port}
	copy(sa.Addr[:], a.IP)
	return sa
}

// LockNetwork installs the network lock (see package netlock) of the
// tree's processes pids, named name, for every established TCP
// connection, listening TCP socket and bound UDP socket they hold;
// nothing when they hold none. It runs before any fd is dumped, so no
// packet changes a connection between the reading of its state and the
// end of the dump. It returns the table's name, "" when none was needed.
func (t *Tree) LockNetwork(pids []int, name string) (string, error) {
	t.inet = &inetTree{locked: map[uint64]bool{}, held: map[uint64]*heldConn{}, saved: map[uint64]*image.InetSock{}, descs: map[uint64]string{}}
	var conns []netlock.Conn
	for _, pid := range pids {
		pidfd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			return "", fmt.Errorf("pidfd_open %d: %w", pid, err)
		}
		err = t.lockConns(pid, pidfd, &conns)
		unix.Close(pidfd)
		if err != nil {
			return "", err
		}
	}
	if len(conns) == 0 {
		return "", nil
	}
	if !netlock.Available() && !t.inet.established {
		// Listening and UDP ports only: without nft they go unlocked
		// (a client may be refused while the tree is down).
		return "", nil
	}
	// A lease, renewed until the tree is released or killed: a dump
	// killed with SIGKILL must not leave the tree's connections blocked.
	if err := netlock.Lock(name, conns, time.Now().Add(netlock.Lease)); err != nil {
		return "", err
	}
	t.inet.lock = name
	t.inet.keeper = netlock.Keep(name)
	return name, nil
}

// lockConns adds the connections and ports of process pid to conns.
func (t *Tree) lockConns(pid, pidfd int, conns *[]netlock.Conn) error {
	nums, err := procfs.ListFDs(pid)
	if err != nil {
		return err
	}
	for _, n := range nums {
		var st unix.Stat_t
		if err := unix.Stat(fmt.Sprintf("/proc/%d/fd/%d", pid, n), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFSOCK || t.inet.locked[st.Ino] {
			continue
		}
		s := &fdState{pid: pid, num: n, pidfd: pidfd}
		dup, err := s.copy()
		if err != nil {
			return err
		}
		c, ok, err := probeInet(dup)
		unix.Close(dup)
		if err != nil || !ok {
			continue // Dump refuses it, naming the fd
		}
		conn := netlock.Conn{UDP: c.proto == unix.IPPROTO_UDP, Local: unmap(c.local)}
		switch {
		case c.proto == unix.IPPROTO_TCP && c.state == image.TCPEstablished:
			conn.Remote = unmap(c.remote)
			t.inet.established = true
		case c.proto == unix.IPPROTO_TCP && c.state == image.TCPListen, c.proto == unix.IPPROTO_UDP && c.local.Port() != 0:
		default:
			continue
		}
		t.inet.locked[st.Ino] = true
		*conns = append(*conns, conn)
	}
	return nil
}

// unmap gives an IPv4-mapped IPv6 address as IPv4 (its packets are).
func unmap(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

// RepairForKill puts every established connection of the tree into
// repair mode, so that the kill closes them without a FIN or a reset:
// rtcr's copies keep them open until CloseNetwork.
func (t *Tree) RepairForKill() error {
	if t.inet == nil {
		return nil
	}
	if t.inet.keeper != nil {
		if err := t.inet.keeper.Err(); err != nil {
			return fmt.Errorf("the network lock may have lapsed while the tree was frozen: %w", err)
		}
	}
	for ino, h := range t.inet.held {
		if err := unix.SetsockoptInt(h.fd, unix.IPPROTO_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_ON); err != nil {
			return fmt.Errorf("TCP_REPAIR on socket:[%d] before the kill: %w", ino, err)
		}
	}
	return nil
}

// ReleaseNetwork, for a tree about to run on (a failed dump, or one that
// leaves it running), turns repair mode off again on every established
// connection (setting back SO_REUSEADDR, which TCP_REPAIR resets),
// closes rtcr's copies and removes the network lock. For a killed tree
// (killed true) it closes the copies (the connections, in repair mode,
// go without a packet) and makes the lock hold for good, until the
// restore removes it.
func (t *Tree) ReleaseNetwork(killed bool) error {
	if t.inet == nil {
		return nil
	}
	var first error
	if t.inet.keeper != nil {
		t.inet.keeper.Stop()
		t.inet.keeper = nil
		if killed && t.inet.lock != "" {
			first = netlock.Hold(t.inet.lock)
		}
	}
	for ino, h := range t.inet.held {
		if !killed {
			if err := repairOff(h.fd, h.reuse, false); err != nil && first == nil {
				first = fmt.Errorf("socket:[%d]: %w", ino, err)
			}
		}
		unix.Close(h.fd)
	}
	t.inet.held = map[uint64]*heldConn{}
	if !killed && t.inet.lock != "" {
		if err := netlock.Unlock(t.inet.lock); err != nil && first == nil {
			first = err
		}
		t.inet.lock = ""
	}
	return first
}

// repairOff leaves repair mode (with a window probe when probe) and puts
// SO_REUSEADDR back to reuse.
func repairOff(fd, reuse int, probe bool) error {
	off := unix.TCP_REPAIR_OFF_NO_WP
	if probe {
		off = unix.TCP_REPAIR_OFF
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_REPAIR, off); err != nil {
		return fmt.Errorf("TCP_REPAIR off: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, reuse); err != nil {
		return fmt.Errorf("setsockopt SO_REUSEADDR %d: %w", reuse, err)
	}
	return nil
}

func dumpInet(s *fdState) (image.FD, bool, error) {
	if s.st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return image.FD{}, false, nil
	}
	if t := s.tree.inet; t != nil && t.saved[s.st.Ino] != nil {
		sk := t.saved[s.st.Ino]
		return image.FD{Flags: s.info.Flags, Desc: s.link + " " + t.descs[s.st.Ino], Inet: sk}, true, nil
	}
	dup, err := s.copy()
	if err != nil {
		return image.FD{}, false, err
	}
	c, ok, err := probeInet(dup)
	if !ok {
		unix.Close(dup)
		return image.FD{}, false, err
	}
	keep := false
	defer func() {
		if !keep {
			unix.Close(dup)
		}
	}()
	proto := "TCP"
	if c.proto == unix.IPPROTO_UDP {
		proto = "UDP"
	}
	what := fmt.Sprintf("%s %s socket %s", familyName(c.family), proto, c.local)
	if c.remote.IsValid() {
		what += " connected to " + c.remote.String()
	}
	sk := &image.InetSock{Ino: s.st.Ino, Family: c.family, Type: c.typ, State: c.state, Bound: c.bound, Remote: toImage(c.remote)}
	if c.bound {
		sk.Local = toImage(c.local)
	}
	fd := image.FD{Flags: s.info.Flags, Desc: s.link + " " + what, Inet: sk}
	if c.local.Addr().Is6() && c.local.Addr().Zone() != "" || c.family == unix.AF_INET6 && c.local.Addr().IsLinkLocalUnicast() {
		return image.FD{}, false, fmt.Errorf("%s: a link-local IPv6 address (its scope is not saved): %w", what, ErrUnsupported)
	}
	if c.proto == unix.IPPROTO_TCP {
		what += " (" + stateName(c.state) + ")"
	}
	// A TCP socket in state CLOSE always polls POLLHUP; one that was
	// connected once is refused below by its segment count.
	if err := checkPoll(dup, what, c.proto == unix.IPPROTO_TCP && c.state == image.TCPClose); err != nil {
		return image.FD{}, false, err
	}
	if sk.Opts, err = dumpOpts(dup, c); err != nil {
		return image.FD{}, false, fmt.Errorf("%s: %w", what, err)
	}
	switch {
	case c.proto == unix.IPPROTO_UDP:
		n, err := unix.IoctlGetInt(dup, unix.SIOCINQ)
		if err != nil {
			return image.FD{}, false, fmt.Errorf("%s: ioctl SIOCINQ: %w", what, err)
		}
		if n > 0 {
			return image.FD{}, false, fmt.Errorf("%s: datagrams queued (%d bytes in the first): queued UDP datagrams are not saved: %w", what, n, ErrUnsupported)
		}
	case c.state == image.TCPListen:
		// struct tcp_info of a listening socket: tcpi_unacked is the
		// accept queue's length, tcpi_sacked the backlog.
		waiting := nativeU32(c.info[24:])
		if waiting > 0 {
			// Reached without nft (no drain) or when a handshake
			// completed after the drain's check.
			return image.FD{}, false, fmt.Errorf("%s: listening, with %d connections not accepted yet (not saved; the dump lets the program accept them first only with the nft command): %w", what, waiting, ErrUnsupported)
		}
		sk.Backlog = int(nativeU32(c.info[28:]))
	case c.state == image.TCPClose:
		// A socket that was connected once (reset, or closed by its
		// peer and shut down) has sent or received segments.
		if segs := nativeU32(c.info[136:]); segs > 0 || c.remote.IsValid() {
			return image.FD{}, false, fmt.Errorf("%s: TCP connection in state CLOSE after %d segments (reset or shut down; not saved): %w", what, segs, ErrUnsupported)
		}
	case c.state == image.TCPEstablished:
		t := s.tree.inet
		if t == nil || !t.locked[s.st.Ino] {
			return image.FD{}, false, fmt.Errorf("%s: established TCP connection without the network lock: %w", what, ErrUnsupported)
		}
		h := &heldConn{fd: dup}
		if sk.TCP, h.reuse, err = dumpRepair(dup, c); err != nil {
			return image.FD{}, false, fmt.Errorf("%s: %w", what, err)
		}
		if old := t.held[s.st.Ino]; old != nil {
			unix.Close(old.fd)
		}
		t.held[s.st.Ino] = h
		keep = true
	default:
		return image.FD{}, false, fmt.Errorf("%s: TCP socket in state %s (only ESTABLISHED, LISTEN and unconnected CLOSE are saved): %w", what, stateName(c.state), ErrUnsupported)
	}
	if t := s.tree.inet; t != nil {
		t.saved[s.st.Ino], t.descs[s.st.Ino] = sk, what
	}
	return fd, true, nil
}

// checkPoll refuses a socket shut down for reading (EPOLLRDHUP) or with
// an error pending (EPOLLERR): neither is saved. poll reads nothing.
// closed: the socket is a TCP socket in state CLOSE, for which the
// kernel reports POLLHUP whatever was done with it.
func checkPoll(fd int, what string, closed bool) error {
	p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLRDHUP}}
	if _, err := unix.Poll(p, 0); err != nil {
		return fmt.Errorf("%s: poll: %w", what, err)
	}
	switch {
	case p[0].Revents&unix.POLLERR != 0:
		return fmt.Errorf("%s: an error is pending on it (SO_ERROR or the error queue; not saved): %w", what, ErrUnsupported)
	case p[0].Revents&unix.POLLRDHUP != 0, p[0].Revents&unix.POLLHUP != 0 && !closed:
		return fmt.Errorf("%s: shut down (for reading, or by its peer; not saved): %w", what, ErrUnsupported)
	}
	return nil
}

func nativeU32(b []byte) uint32 { return *(*uint32)(unsafe.Pointer(&b[0])) }

// openInet creates the socket in the stub and gives it its options,
// address, listen backlog, peer or TCP connection state on rtcr's copy.
func openInet(c *restoreCtx, fd *image.FD) (int, error) {
	s := fd.Inet
	proto := unix.IPPROTO_TCP
	if s.Type == unix.SOCK_DGRAM {
		proto = unix.IPPROTO_UDP
	}
	got, err := c.r.Syscall(unix.SYS_SOCKET, uint64(s.Family), uint64(s.Type|unix.SOCK_CLOEXEC), uint64(proto))
	if err != nil {
		return -1, fmt.Errorf("socket(%d, %d, %d): %w", s.Family, s.Type, proto, err)
	}
	self, err := getfd(c.r.Pid, int(got))
	if err != nil {
		return -1, err
	}
	held := false
	defer func() {
		if !held {
			unix.Close(self)
		}
	}()
	if err := restoreInet(c, self, s); err != nil {
		return -1, err
	}
	if s.TCP != nil {
		if c.inet == nil {
			c.inet = map[uint64]*heldConn{}
		}
		c.inet[s.Ino] = &heldConn{fd: self, reuse: optInt(s, unix.SOL_SOCKET, unix.SO_REUSEADDR)}
		held = true
	}
	return int(got), nil
}

// restoreInet gives the new socket fd (rtcr's copy) the state of s.
func restoreInet(c *restoreCtx, fd int, s *image.InetSock) (err error) {
	if s.TCP != nil {
		// Repair mode first: bind then ignores the ports in use
		// (SK_FORCE_REUSE), and connect makes no handshake.
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_ON); err != nil {
			return fmt.Errorf("TCP_REPAIR on: %w", err)
		}
	}
	for _, o := range s.Opts {
		if o.Level == unix.SOL_SOCKET && o.Opt == unix.SO_REUSEADDR {
			continue
		}
		spec := image.FindSockOpt(o.Level, o.Opt)
		if o.Level == unix.SOL_SOCKET && o.Opt == image.SoBufLock {
			continue // set last, by setBufLock
		}
		if o.Level == unix.SOL_SOCKET && (o.Opt == unix.SO_SNDBUF || o.Opt == unix.SO_RCVBUF) {
			if err := setInetBuf(fd, o, optInt(s, unix.SOL_SOCKET, image.SoBufLock), c.as == nil); err != nil {
				return err
			}
			continue
		}
		if err := setOpt(fd, o.Level, o.Opt, o.Val); err != nil {
			return fmt.Errorf("setsockopt %s: %w", spec.Name, err)
		}
	}
	if s.TCP == nil && s.Type == unix.SOCK_STREAM {
		// Bound with SO_REUSEADDR for the time of bind and listen:
		// connections closed earlier may hold the port in TIME_WAIT.
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
			return fmt.Errorf("setsockopt SO_REUSEADDR: %w", err)
		}
	}
	if s.Bound {
		transparent, berr := c.bindMaybeMissing(fd, s.Family, sockaddr(s.Family, s.Local))
		if berr != nil {
			return fmt.Errorf("bind %s: %w", fmtAddr(s.Local), berr)
		}
		if transparent {
			// Off again once connect is done (netmove_linux.go).
			defer func() {
				if e := setTransparent(fd, s.Family, false); e != nil && err == nil {
					err = e
				}
			}()
		}
	}
	switch {
	case s.State == image.TCPListen:
		if err := unix.Listen(fd, s.Backlog); err != nil {
			return fmt.Errorf("listen %s: %w", fmtAddr(s.Local), err)
		}
	case s.Type == unix.SOCK_DGRAM && s.State == image.TCPEstablished:
		if err := unix.Connect(fd, sockaddr(s.Family, s.Remote)); err != nil {
			return fmt.Errorf("connect to %s: %w", fmtAddr(s.Remote), err)
		}
	case s.TCP != nil:
		if err := restoreRepair(fd, s); err != nil {
			return fmt.Errorf("connection %s to %s: %w", fmtAddr(s.Local), fmtAddr(s.Remote), err)
		}
		return setBufLock(fd, optInt(s, unix.SOL_SOCKET, image.SoBufLock))
	}
	if err := setBufLock(fd, optInt(s, unix.SOL_SOCKET, image.SoBufLock)); err != nil {
		return err
	}
	reuse := optInt(s, unix.SOL_SOCKET, unix.SO_REUSEADDR)
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, reuse); err != nil {
		return fmt.Errorf("setsockopt SO_REUSEADDR %d: %w", reuse, err)
	}
	return nil
}

// fmtAddr formats an image address.
func fmtAddr(a image.InetAddr) string {
	ip, _ := netip.AddrFromSlice(a.IP)
	return netip.AddrPortFrom(ip, uint16(a.Port)).String()
}

// FinishNetwork ends the restore of the tree's TCP connections once
// every process has its fds: repair mode off (with a window probe, so
// the peer hears from the connection again) and SO_REUSEADDR as saved on
// each, rtcr's copies closed; then the network lock lock (the image's,
// "" for none) and the one LockRestore installed are removed.
func (rs *Restorer) FinishNetwork(lock string) error {
	for ino, h := range rs.inet {
		if err := repairOff(h.fd, h.reuse, true); err != nil {
			return fmt.Errorf("connection socket:[%d] of the image: %w", ino, err)
		}
		unix.Close(h.fd)
		delete(rs.inet, ino)
	}
	if err := rs.UnlockRestore(); err != nil {
		return err
	}
	if lock != "" {
		return netlock.Unlock(lock)
	}
	return nil
}

// DropNetwork closes rtcr's copies of restored connections after a
// failed restore; in repair mode, they go without a packet.
func (rs *Restorer) DropNetwork() {
	for ino, h := range rs.inet {
		unix.Close(h.fd)
		delete(rs.inet, ino)
	}
}
