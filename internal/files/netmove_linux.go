package files

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"time"
	"unsafe"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/netlock"
	"golang.org/x/sys/unix"
)

// A restore on another host (a migration's destination) differs from a
// local one in two ways, both handled here:
//
//   - the dump's network lock is not installed there: the restore
//     installs the same table itself (LockRestore) before any socket
//     exists, so that no packet reaches or leaves a restored connection
//     or listener before the processes are released (FinishNetwork
//     removes it, as it removes the dump's after a local restore), and
//     a restore that fails removes it after its processes were killed
//     (UnlockRestore). Repair mode alone is not enough: a connection in
//     repair mode still acknowledges the segments that reach it, so a
//     held copy reached early would take bytes a failed migration then
//     loses (TestMigrateTCPHeldCopySilent, tried without the lock);
//   - the service address may move only after the sockets are made
//     (a migration adds it at the destination once the source is dead):
//     with AllowMissingAddresses, a TCP or UDP socket whose bind answers
//     EADDRNOTAVAIL is bound again with IP_TRANSPARENT (IPV6_TRANSPARENT)
//     on for the time of bind and connect, then off. IP_FREEBIND alone
//     lets bind through, but a repair-mode connect then fails with
//     ENETUNREACH (the route lookup of connect needs a local source
//     address unless the socket is transparent); IP_TRANSPARENT lets
//     both through (tried on kernel 6.18).

// netMove is the Restorer's state for the two.
type netMove struct {
	// missingOK allows sockets bound to addresses this host lacks.
	missingOK bool
	// lock is the table LockRestore installed ("" none), kept renewed
	// by keeper while the restore runs.
	lock   string
	keeper *netlock.Keeper
}

// AllowMissingAddresses lets the restore bind TCP and UDP sockets to
// local addresses this host does not have (yet): see netMove.
func (rs *Restorer) AllowMissingAddresses() { rs.move.missingOK = true }

// LockRestore installs the network lock name (the image's) for the
// connections and ports of procs when it is not installed on this host
// already (a restore on another host than the dump's); for an image
// without one (dumped with --leave-running, whose lock went with the
// dump) it installs a table of a new name. Nothing when procs hold no
// connection, listener or bound UDP socket. It is a lease, renewed
// until FinishNetwork or UnlockRestore: a restore killed with SIGKILL
// leaves a table that lapses. Without nft, an image with established connections is refused (as
// the dump refuses them); listening and UDP ports go unlocked.
func (rs *Restorer) LockRestore(name string, procs []image.Process) error {
	if name != "" && netlock.Exists(name) {
		return nil
	}
	conns := ImageConns(procs)
	if len(conns) == 0 {
		return nil
	}
	if !netlock.Available() {
		for _, c := range conns {
			if c.Remote.IsValid() {
				return fmt.Errorf("established TCP connections in the image: %w", netlock.ErrNoNft)
			}
		}
		return nil // listening and UDP ports only, as the dump does
	}
	if name == "" {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return fmt.Errorf("network lock name: %w", err)
		}
		name = image.NetLockName(hex.EncodeToString(b[:]))
	}
	if err := netlock.Lock(name, conns, time.Now().Add(netlock.Lease)); err != nil {
		return fmt.Errorf("network lock for the restore: %w", err)
	}
	rs.move.lock = name
	rs.move.keeper = netlock.Keep(name)
	return nil
}

// stopKeeper ends the renewals of the restore's own lock.
func (rs *Restorer) stopKeeper() {
	if rs.move.keeper != nil {
		rs.move.keeper.Stop()
		rs.move.keeper = nil
	}
}

// UnlockRestore removes the lock LockRestore installed: at the end of
// the restore (FinishNetwork), or after a failed restore whose
// processes were killed (the dump's own lock, on the dump's host, is
// left for another try).
func (rs *Restorer) UnlockRestore() error {
	rs.stopKeeper()
	if rs.move.lock == "" {
		return nil
	}
	name := rs.move.lock
	rs.move.lock = ""
	return netlock.Unlock(name)
}

// ImageConns lists what the network lock of procs holds: each
// established TCP connection's 4-tuple, each listening TCP port and
// bound UDP port (as the dump's lock does).
func ImageConns(procs []image.Process) []netlock.Conn {
	var conns []netlock.Conn
	seen := map[uint64]bool{}
	for _, p := range procs {
		for _, fd := range p.FDs {
			s := fd.Inet
			if s == nil || seen[s.Ino] {
				continue
			}
			seen[s.Ino] = true
			c := netlock.Conn{UDP: s.Type == unix.SOCK_DGRAM, Local: unmap(imageAddrPort(s.Local))}
			switch {
			case s.TCP != nil:
				c.Remote = unmap(imageAddrPort(s.Remote))
			case s.Type == unix.SOCK_STREAM && s.State == image.TCPListen, s.Type == unix.SOCK_DGRAM && s.Local.Port != 0:
			default:
				continue
			}
			conns = append(conns, c)
		}
	}
	return conns
}

// LocalAddrs lists the distinct local addresses procs' TCP and UDP
// sockets are bound to, leaving out unspecified and loopback ones: the
// addresses that must be where the processes run.
func LocalAddrs(procs []image.Process) []netip.Addr {
	var addrs []netip.Addr
	seen := map[netip.Addr]bool{}
	for _, p := range procs {
		for _, fd := range p.FDs {
			if fd.Inet == nil || !fd.Inet.Bound && fd.Inet.TCP == nil {
				continue
			}
			a := imageAddrPort(fd.Inet.Local).Addr().Unmap()
			if !a.IsValid() || a.IsUnspecified() || a.IsLoopback() || seen[a] {
				continue
			}
			seen[a] = true
			addrs = append(addrs, a)
		}
	}
	return addrs
}

// imageAddrPort converts an image address.
func imageAddrPort(a image.InetAddr) netip.AddrPort {
	ip, _ := netip.AddrFromSlice(a.IP)
	return netip.AddrPortFrom(ip, uint16(a.Port))
}

// bindMaybeMissing binds fd (rtcr's copy of a new socket of family) to
// sa; when the address is missing here and the restore allows it, it
// binds with IP_TRANSPARENT on and reports true: the caller turns it off
// (setTransparent false) once connect is done.
func (rs *Restorer) bindMaybeMissing(fd, family int, sa unix.Sockaddr) (bool, error) {
	err := unix.Bind(fd, sa)
	if err == nil || !errors.Is(err, unix.EADDRNOTAVAIL) || !rs.move.missingOK {
		return false, err
	}
	if err := setTransparent(fd, family, true); err != nil {
		return false, err
	}
	if err := unix.Bind(fd, sa); err != nil {
		_ = setTransparent(fd, family, false)
		return false, fmt.Errorf("with IP_TRANSPARENT (the address is not on this host): %w", err)
	}
	return true, nil
}

// setTransparent sets IP_TRANSPARENT (IPV6_TRANSPARENT for family
// AF_INET6: both set the same flag of the socket).
func setTransparent(fd, family int, on bool) error {
	v := 0
	if on {
		v = 1
	}
	level, opt, name := unix.IPPROTO_IP, unix.IP_TRANSPARENT, "IP_TRANSPARENT"
	if family == unix.AF_INET6 {
		level, opt, name = unix.IPPROTO_IPV6, unix.IPV6_TRANSPARENT, "IPV6_TRANSPARENT"
	}
	if err := unix.SetsockoptInt(fd, level, opt, v); err != nil {
		return fmt.Errorf("setsockopt %s %d (needs CAP_NET_ADMIN): %w", name, v, err)
	}
	return nil
}

// AbortConnections, for a tree about to run on whose connections a copy
// on another host has used since they were dumped (a post-copy migration
// that failed after its copy ran), ends every established connection
// held in repair mode: their state here is older than their peers' (the
// copy took and sent bytes this host never saw), so left alone they
// would hang, silently, until TCP gives up. A disconnect (connect with
// AF_UNSPEC) in repair mode sends no packet and leaves the socket closed
// with ECONNABORTED, which the process sees at its next read or write;
// a peer's next segment gets a reset from this host, no socket having
// its four-tuple any more. The sockets leave the held set:
// ReleaseNetwork does not touch them again.
func (t *Tree) AbortConnections() error {
	if t.inet == nil {
		return nil
	}
	var first error
	for ino, h := range t.inet.held {
		sa := unix.RawSockaddr{Family: unix.AF_UNSPEC}
		_, _, e := unix.Syscall(unix.SYS_CONNECT, uintptr(h.fd), uintptr(unsafe.Pointer(&sa)), unsafe.Sizeof(sa))
		if e != 0 && first == nil {
			first = fmt.Errorf("abort socket:[%d]: %w", ino, e)
		}
		unix.Close(h.fd)
		delete(t.inet.held, ino)
	}
	return first
}
