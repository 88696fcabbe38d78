package files

import (
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"
	"unsafe"

	"github.com/rtcr/rtcr/internal/abi"
	"github.com/rtcr/rtcr/internal/ptrace"
	"golang.org/x/sys/unix"
)

// unixInfo is what sock_diag tells of one AF_UNIX socket.
type unixInfo struct {
	ino        uint32
	typ, state int
	peer       uint32
	named      bool
	name       []byte // sun_path as bound (a path name without its NUL)
	vfsDev     uint64 // the socket file's device (as st_dev) and inode
	vfsIno     uint64
	rqueue     uint32 // a listener: connections waiting to be accepted
	wqueue     uint32 // a listener: its backlog
	icons      []uint32
	shutdown   int    // -1: not reported
	wmem       uint32 // bytes sent and not yet read by the receiver (SK_MEMINFO_WMEM_ALLOC)
}

// unixDiagShow is what rtcr asks sock_diag of each socket.
const unixDiagShow = abi.UDIAG_SHOW_NAME | abi.UDIAG_SHOW_PEER | abi.UDIAG_SHOW_RQLEN | abi.UDIAG_SHOW_VFS | abi.UDIAG_SHOW_ICONS | abi.UDIAG_SHOW_MEMINFO

// unixDiag asks sock_diag about the AF_UNIX socket with inode ino (in
// rtcr's network namespace).
func unixDiag(ino uint32) (*unixInfo, error) {
	infos, err := unixDiagQuery(ino, 0)
	if err != nil {
		return nil, err
	}
	if len(infos) == 0 || infos[0].ino != ino {
		return nil, fmt.Errorf("sock_diag of socket:[%d]: %w", ino, errBadFdinfo)
	}
	return infos[0], nil
}

// unixSockets lists every AF_UNIX socket of rtcr's network namespace.
func unixSockets() ([]*unixInfo, error) {
	return unixDiagQuery(0, unix.NLM_F_DUMP)
}

// unixDiagQuery sends one sock_diag request (by inode, or a dump of all
// with NLM_F_DUMP) and parses the answers.
func unixDiagQuery(ino uint32, flags uint16) ([]*unixInfo, error) {
	req := abi.UnixDiagReq{
		Family: unix.AF_UNIX,
		States: ^uint32(0),
		Ino:    ino,
		Show:   unixDiagShow,
		Cookie: [2]uint32{^uint32(0), ^uint32(0)},
	}
	var out []*unixInfo
	err := sockDiag(ptrace.Bytes(&req), flags, func(data []byte) error {
		info, err := parseUnixDiag(data)
		if err != nil {
			return err
		}
		out = append(out, info)
		return nil
	})
	var errno syscall.Errno
	switch {
	case errors.As(err, &errno):
		return nil, fmt.Errorf("sock_diag of socket:[%d] (in another network namespace?): %w", ino, err)
	case err != nil:
		return nil, err
	case len(out) == 0 && flags&unix.NLM_F_DUMP == 0:
		return nil, fmt.Errorf("sock_diag of socket:[%d]: empty answer", ino)
	}
	return out, nil
}

// parseUnixDiag parses one unix_diag_msg with its attributes.
func parseUnixDiag(data []byte) (*unixInfo, error) {
	var dm abi.UnixDiagMsg
	if len(data) < int(unsafe.Sizeof(dm)) {
		return nil, fmt.Errorf("sock_diag answer: %w", errBadFdinfo)
	}
	copy(ptrace.Bytes(&dm), data)
	info := &unixInfo{ino: dm.Ino, typ: int(dm.Type), state: int(dm.State), shutdown: -1}
	for a := data[unsafe.Sizeof(dm):]; len(a) >= 4; {
		l := int(binary.NativeEndian.Uint16(a))
		typ := binary.NativeEndian.Uint16(a[2:])
		if l < 4 || l > len(a) {
			return nil, fmt.Errorf("sock_diag attribute length %d: %w", l, errBadFdinfo)
		}
		v := a[4:l]
		switch typ {
		case abi.UNIX_DIAG_NAME:
			info.named = true
			info.name = append([]byte(nil), v...)
			if len(v) > 0 && v[0] != 0 {
				// A path name is reported with its terminating NUL.
				for len(info.name) > 0 && info.name[len(info.name)-1] == 0 {
					info.name = info.name[:len(info.name)-1]
				}
			}
		case abi.UNIX_DIAG_VFS:
			var vfs abi.UnixDiagVfs
			if len(v) >= int(unsafe.Sizeof(vfs)) {
				copy(ptrace.Bytes(&vfs), v)
				info.vfsIno = uint64(vfs.Ino)
				info.vfsDev = unix.Mkdev(vfs.Dev>>20, vfs.Dev&0xfffff)
			}
		case abi.UNIX_DIAG_PEER:
			if len(v) >= 4 {
				info.peer = binary.NativeEndian.Uint32(v)
			}
		case abi.UNIX_DIAG_ICONS:
			for i := 0; i+4 <= len(v); i += 4 {
				info.icons = append(info.icons, binary.NativeEndian.Uint32(v[i:]))
			}
		case abi.UNIX_DIAG_RQLEN:
			if len(v) >= 8 {
				info.rqueue = binary.NativeEndian.Uint32(v)
				info.wqueue = binary.NativeEndian.Uint32(v[4:])
			}
		case abi.UNIX_DIAG_MEMINFO:
			if len(v) >= 4*(unix.SK_MEMINFO_WMEM_ALLOC+1) {
				info.wmem = binary.NativeEndian.Uint32(v[4*unix.SK_MEMINFO_WMEM_ALLOC:])
			}
		case abi.UNIX_DIAG_SHUTDOWN:
			if len(v) >= 1 {
				info.shutdown = int(v[0])
			}
		}
		a = a[min(len(a), (l+3)&^3):]
	}
	return info, nil
}
