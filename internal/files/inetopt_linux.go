package files

import (
	"errors"
	"fmt"
	"strings"
	"unsafe"

	"github.com/rtcr/rtcr/internal/image"
	"golang.org/x/sys/unix"
)

// refusedOpts are options rtcr reads but does not restore: a socket
// where one differs from a new socket's is refused, naming it.
var refusedOpts = []struct {
	name       string
	level, opt int
	family     int
	size       int
}{
	{"SO_ATTACH_FILTER (a BPF filter, SO_GET_FILTER)", unix.SOL_SOCKET, unix.SO_GET_FILTER, 0, 4},
	{"SO_BUSY_POLL", unix.SOL_SOCKET, unix.SO_BUSY_POLL, 0, 4},
	{"TCP_ULP (kernel TLS …)", unix.IPPROTO_TCP, unix.TCP_ULP, 0, 16},
	{"TCP_WINDOW_CLAMP", unix.IPPROTO_TCP, unix.TCP_WINDOW_CLAMP, -1, 4},
	{"IP_TRANSPARENT (needs CAP_NET_ADMIN)", unix.IPPROTO_IP, unix.IP_TRANSPARENT, unix.AF_INET, 4},
	{"IPV6_TRANSPARENT (needs CAP_NET_ADMIN)", unix.IPPROTO_IPV6, unix.IPV6_TRANSPARENT, unix.AF_INET6, 4},
}

// getOpt reads option level/opt of fd, size bytes at most.
func getOpt(fd, level, opt, size int) ([]byte, error) {
	b := make([]byte, size)
	l := uint32(size)
	if _, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt), uintptr(unsafe.Pointer(&b[0])), uintptr(unsafe.Pointer(&l)), 0); e != 0 {
		return nil, e
	}
	return b[:l], nil
}

// setOpt sets option level/opt of fd to v.
func setOpt(fd, level, opt int, v []byte) error {
	if _, _, e := unix.Syscall6(unix.SYS_SETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt), uintptr(unsafe.Pointer(&v[0])), uintptr(len(v)), 0); e != 0 {
		return e
	}
	return nil
}

// dumpOpts returns the options of image.SockOpts of socket c that differ
// from those of a new socket of its family and type, and refuses one of
// refusedOpts set, or SO_PEEK_OFF on TCP. SO_MARK and SO_PRIORITY above
// 6, which only CAP_NET_ADMIN sets, are saved: the image check asks the
// image owner for that capability before rtcr (root) sets them again.
func dumpOpts(fd int, c *inetCopy) ([]image.SockOpt, error) {
	fresh, err := unix.Socket(c.family, c.typ|unix.SOCK_CLOEXEC, c.proto)
	if err != nil {
		return nil, fmt.Errorf("a new socket to compare options with: %w", err)
	}
	defer unix.Close(fresh)
	var out []image.SockOpt
	for _, spec := range image.SockOpts {
		if !spec.Applies(c.family, c.typ) {
			continue
		}
		v, err := getOpt(fd, spec.Level, spec.Opt, spec.Size)
		if errors.Is(err, unix.ENOPROTOOPT) && spec.Opt == image.SoBufLock {
			continue // before Linux 5.14: no autotuning state to save
		}
		if err != nil {
			return nil, fmt.Errorf("getsockopt %s: %w", spec.Name, err)
		}
		def, err := getOpt(fresh, spec.Level, spec.Opt, spec.Size)
		if err != nil {
			return nil, fmt.Errorf("getsockopt %s of a new socket: %w", spec.Name, err)
		}
		if string(v) == string(def) {
			continue
		}
		if spec.Opt == unix.SO_BINDTODEVICE && spec.Level == unix.SOL_SOCKET && len(v) < spec.Size {
			// The name and its NUL: padded to the size the image keeps.
			v = append(v, make([]byte, spec.Size-len(v))...)
		}
		if len(v) != spec.Size {
			return nil, fmt.Errorf("getsockopt %s gave %d bytes, want %d", spec.Name, len(v), spec.Size)
		}
		out = append(out, image.SockOpt{Level: spec.Level, Opt: spec.Opt, Val: v})
	}
	for _, r := range refusedOpts {
		if r.family > 0 && r.family != c.family || r.family == -1 && c.proto != unix.IPPROTO_TCP {
			continue
		}
		if r.opt == unix.TCP_ULP && c.proto != unix.IPPROTO_TCP {
			continue
		}
		v, err := getOpt(fd, r.level, r.opt, r.size)
		def, derr := getOpt(fresh, r.level, r.opt, r.size)
		if err != nil || derr != nil {
			if errors.Is(err, unix.ENOPROTOOPT) || errors.Is(err, unix.EOPNOTSUPP) {
				continue
			}
			return nil, fmt.Errorf("getsockopt %s: %w / %w", r.name, err, derr)
		}
		if r.opt == unix.TCP_WINDOW_CLAMP && c.state != image.TCPClose && c.state != image.TCPListen {
			continue // an established connection's clamp comes from its window, checked by TCP_REPAIR_WINDOW
		}
		if strings.TrimRight(string(v), "\x00") != strings.TrimRight(string(def), "\x00") {
			return nil, fmt.Errorf("socket option %s is set (not saved): %w", r.name, ErrUnsupported)
		}
	}
	if c.proto == unix.IPPROTO_TCP {
		if off, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PEEK_OFF); err == nil && off != -1 {
			return nil, fmt.Errorf("SO_PEEK_OFF %d on a TCP socket (not saved): %w", off, ErrUnsupported)
		}
	}
	return out, nil
}

// optInt returns the saved int option level/opt of s, 0 when not saved
// (a new socket's value of the boolean options asked).
func optInt(s *image.InetSock, level, opt int) int {
	for _, o := range s.Opts {
		if o.Level == level && o.Opt == opt {
			return int(nativeU32(o.Val))
		}
	}
	return 0
}

// setInetBuf sets SO_SNDBUF or SO_RCVBUF o (the doubled value getsockopt
// showed), forcing it past the sysctl limit with SO_*BUFFORCE when force
// (the image owner is root or the restorer); the value must come out as
// saved. A size the kernel autotuned (its bit clear in locks, the saved
// SO_BUF_LOCK) can be odd, which setsockopt cannot make: it comes out one
// less, and autotuning, turned on again by setBufLock, goes on from there.
func setInetBuf(fd int, o image.SockOpt, locks int, force bool) error {
	want := int(nativeU32(o.Val))
	forceOpt, name, bit := unix.SO_SNDBUFFORCE, "SO_SNDBUF", image.SockSndbufLock
	if o.Opt == unix.SO_RCVBUF {
		forceOpt, name, bit = unix.SO_RCVBUFFORCE, "SO_RCVBUF", image.SockRcvbufLock
	}
	if locks&bit == 0 {
		want &^= 1
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, o.Opt, want/2); err != nil {
		return fmt.Errorf("setsockopt %s %d: %w", name, want/2, err)
	}
	if got, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, o.Opt); got != want && force {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, forceOpt, want/2); err != nil {
			return fmt.Errorf("setsockopt %s (forced) %d: %w", name, want/2, err)
		}
	}
	if got, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, o.Opt); got != want {
		return fmt.Errorf("%s came out %d, saved %d (above the sysctl limit?)", name, got, want)
	}
	return nil
}

// setBufLock sets SO_BUF_LOCK to locks, the saved value: setting a buffer
// size (setInetBuf, or raising it to queue the saved bytes) locks it,
// and a size the kernel autotuned must stay autotuned. A kernel without
// SO_BUF_LOCK (before 5.14) saved none; its buffers are left as set.
func setBufLock(fd, locks int) error {
	err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, image.SoBufLock, locks)
	if errors.Is(err, unix.ENOPROTOOPT) && locks == 0 {
		return nil
	}
	if err != nil {
		return fmt.Errorf("setsockopt SO_BUF_LOCK %d: %w", locks, err)
	}
	return nil
}
