package files

import (
	"encoding/binary"
	"fmt"
	"syscall"

	"github.com/rtcr/rtcr/internal/abi"
	"github.com/rtcr/rtcr/internal/ptrace"
	"golang.org/x/sys/unix"
)

// sockDiag sends one sock_diag request (req, the request after the
// netlink header; NLM_F_REQUEST and flags) on a new NETLINK_SOCK_DIAG
// socket and calls each with the payload of every answer, until the
// kernel ends them (NLMSG_DONE, or an acknowledgement), or, without
// NLM_F_DUMP, after the first batch. An error the kernel answers with is
// returned as its syscall.Errno, wrapped.
func sockDiag(req []byte, flags uint16, each func(data []byte) error) error {
	nl, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return fmt.Errorf("sock_diag socket: %w", err)
	}
	defer unix.Close(nl)
	hdr := unix.NlMsghdr{Len: uint32(unix.NLMSG_HDRLEN + len(req)), Type: abi.SOCK_DIAG_BY_FAMILY, Flags: unix.NLM_F_REQUEST | flags, Seq: 1}
	msg := append(append([]byte(nil), ptrace.Bytes(&hdr)...), req...)
	if err := unix.Sendto(nl, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("sock_diag request: %w", err)
	}
	rb := make([]byte, 65536)
	for {
		n, _, err := unix.Recvfrom(nl, rb, 0)
		if err != nil {
			return fmt.Errorf("sock_diag answer: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(rb[:n])
		if err != nil || len(msgs) == 0 {
			return fmt.Errorf("sock_diag answer: %w (%d bytes)", errBadFdinfo, n)
		}
		for _, m := range msgs {
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				return nil
			case unix.NLMSG_ERROR:
				if len(m.Data) >= 4 {
					if e := -int32(binary.NativeEndian.Uint32(m.Data)); e != 0 {
						return fmt.Errorf("sock_diag answer: %w", syscall.Errno(e))
					}
				}
				return nil
			}
			if err := each(m.Data); err != nil {
				return err
			}
		}
		if flags&unix.NLM_F_DUMP == 0 {
			return nil
		}
	}
}
