package files

import (
	"errors"
	"fmt"
	"unsafe"

	"github.com/rtcr/rtcr/internal/image"
	"golang.org/x/sys/unix"
)

// An established TCP connection is saved and restored with TCP_REPAIR
// (the kernel's interface for checkpoint/restore; the facts below are
// those CRIU's soccr relies on). Repair mode is a state of the socket,
// not of a process: rtcr sets it on its own pidfd_getfd copy, reads,
// and leaves it again, while the network lock drops the connection's
// packets. In repair mode:
//
//   - TCP_REPAIR_QUEUE selects the send or the receive queue; then
//     TCP_QUEUE_SEQ reads (or, before connect, sets) its sequence number:
//     write_seq, the end of the send queue, or rcv_nxt, the end of the
//     receive queue; and recv(MSG_PEEK) copies the queue: the send queue
//     from the first unacknowledged byte (SIOCOUTQ bytes, the last
//     SIOCOUTQNSD of them not sent yet), the receive queue from the
//     first unread one (SIOCINQ bytes);
//   - connect() makes the socket ESTABLISHED without a packet;
//   - send() appends to the selected queue without sending (bytes sent
//     into the send queue count as sent, unacknowledged);
//   - TCP_REPAIR_OPTIONS sets what the handshake negotiated (MSS, window
//     scales, SACK, timestamps), TCP_TIMESTAMP the timestamp clock and
//     TCP_REPAIR_WINDOW the windows;
//   - close() drops the connection without a FIN or a reset.
//
// Leaving repair mode resets SO_REUSEADDR (the kernel sets sk_reuse to
// no reuse), so rtcr sets it back.

// The repair queues (linux/tcp.h).
const (
	tcpNoQueue   = 0
	tcpRecvQueue = 1
	tcpSendQueue = 2
)

// TCPI_OPT_* bits rtcr refuses: ECN and microsecond timestamps are
// negotiated but not restorable through TCP_REPAIR_OPTIONS.
const (
	tcpiOptECN     = 8
	tcpiOptECNSeen = 16
	tcpiOptSynData = 32
	tcpiOptUsecTS  = 64
)

// tcpRepairWindow is struct tcp_repair_window.
type tcpRepairWindow struct {
	SndWl1, SndWnd, MaxWindow, RcvWnd, RcvWup uint32
}

// dumpRepair reads the repair state of established connection c (rtcr's
// copy, under the network lock) and returns it with its SO_REUSEADDR.
// The socket is in repair mode only while this runs.
func dumpRepair(fd int, c *inetCopy) (t *image.TCPConn, reuse int, err error) {
	opts := int(c.info[5])
	if opts&(tcpiOptECN|tcpiOptECNSeen) != 0 {
		return nil, 0, fmt.Errorf("ECN negotiated on the connection (not restorable): %w", ErrUnsupported)
	}
	if opts&tcpiOptUsecTS != 0 {
		return nil, 0, fmt.Errorf("microsecond TCP timestamps negotiated (not restorable): %w", ErrUnsupported)
	}
	if reuse, err = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR); err != nil {
		return nil, 0, fmt.Errorf("getsockopt SO_REUSEADDR: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_ON); err != nil {
		return nil, 0, fmt.Errorf("TCP_REPAIR on (needs CAP_NET_ADMIN): %w", err)
	}
	defer func() {
		unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_REPAIR_QUEUE, tcpNoQueue)
		if e := repairOff(fd, reuse, false); e != nil && err == nil {
			err = e
		}
	}()
	t = &image.TCPConn{Options: opts & (image.TCPIOptTimestamps | image.TCPIOptSack | image.TCPIOptWscale)}
	if opts&image.TCPIOptWscale != 0 {
		t.SndWscale, t.RcvWscale = int(c.info[6]&0xf), int(c.info[6]>>4)
	}
	var outq, unsent, inq int
	for _, q := range []struct {
		req  uint
		dst  *int
		name string
	}{{unix.SIOCOUTQ, &outq, "SIOCOUTQ"}, {unix.SIOCOUTQNSD, &unsent, "SIOCOUTQNSD"}, {unix.SIOCINQ, &inq, "SIOCINQ"}} {
		if *q.dst, err = unix.IoctlGetInt(fd, q.req); err != nil {
			return nil, 0, fmt.Errorf("ioctl %s: %w", q.name, err)
		}
	}
	if outq > image.MaxMemfdData || inq > image.MaxMemfdData {
		return nil, 0, fmt.Errorf("%d bytes in the send queue, %d in the receive queue: more than %d: %w", outq, inq, image.MaxMemfdData, ErrUnsupported)
	}
	t.Unsent = unsent
	if t.SndSeq, t.SndQueue, err = peekRepairQueue(fd, tcpSendQueue, outq); err != nil {
		return nil, 0, fmt.Errorf("send queue: %w", err)
	}
	if t.RcvSeq, t.RcvQueue, err = peekRepairQueue(fd, tcpRecvQueue, inq); err != nil {
		return nil, 0, fmt.Errorf("receive queue: %w", err)
	}
	if t.MSS, err = unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_MAXSEG); err != nil {
		return nil, 0, fmt.Errorf("getsockopt TCP_MAXSEG: %w", err)
	}
	if opts&image.TCPIOptTimestamps != 0 {
		ts, err := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_TIMESTAMP)
		if err != nil {
			return nil, 0, fmt.Errorf("getsockopt TCP_TIMESTAMP: %w", err)
		}
		t.Timestamp = uint32(ts)
	}
	var w tcpRepairWindow
	b, err := getOpt(fd, unix.IPPROTO_TCP, unix.TCP_REPAIR_WINDOW, int(unsafe.Sizeof(w)))
	if err != nil || len(b) != int(unsafe.Sizeof(w)) {
		return nil, 0, fmt.Errorf("getsockopt TCP_REPAIR_WINDOW: %d bytes: %w", len(b), err)
	}
	w = *(*tcpRepairWindow)(unsafe.Pointer(&b[0]))
	t.SndWl1, t.SndWnd, t.MaxWindow, t.RcvWnd, t.RcvWup = w.SndWl1, w.SndWnd, w.MaxWindow, w.RcvWnd, w.RcvWup
	return t, reuse, nil
}

// peekRepairQueue selects queue q of fd (in repair mode) and returns its
// sequence number and its n bytes.
func peekRepairQueue(fd, q, n int) (uint32, []byte, error) {
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_REPAIR_QUEUE, q); err != nil {
		return 0, nil, fmt.Errorf("TCP_REPAIR_QUEUE %d: %w", q, err)
	}
	seq, err := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_QUEUE_SEQ)
	if err != nil {
		return 0, nil, fmt.Errorf("getsockopt TCP_QUEUE_SEQ: %w", err)
	}
	if n == 0 {
		return uint32(seq), nil, nil
	}
	buf := make([]byte, n+1)
	got, _, err := unix.Recvfrom(fd, buf, unix.MSG_PEEK|unix.MSG_DONTWAIT)
	if err != nil {
		return 0, nil, fmt.Errorf("recv MSG_PEEK: %w", err)
	}
	if got != n {
		return 0, nil, fmt.Errorf("peeked %d bytes, the queue holds %d (urgent data?): %w", got, n, ErrUnsupported)
	}
	return uint32(seq), buf[:n], nil
}

// restoreRepair makes fd (new, in repair mode, options set, bound) the
// established connection s: sequence numbers, connect, negotiated
// options, timestamp, queues, windows. It stays in repair mode
// (FinishNetwork ends it).
func restoreRepair(fd int, s *image.InetSock) error {
	t := s.TCP
	if err := setQueueSeq(fd, tcpRecvQueue, t.RcvSeq-uint32(len(t.RcvQueue))); err != nil {
		return err
	}
	if err := setQueueSeq(fd, tcpSendQueue, t.SndSeq-uint32(len(t.SndQueue))); err != nil {
		return err
	}
	if err := unix.Connect(fd, sockaddr(s.Family, s.Remote)); err != nil {
		return fmt.Errorf("connect (repair): %w", err)
	}
	var ro []unix.TCPRepairOpt
	if t.Options&image.TCPIOptSack != 0 {
		ro = append(ro, unix.TCPRepairOpt{Code: unix.TCPOPT_SACK_PERMITTED})
	}
	if t.Options&image.TCPIOptWscale != 0 {
		ro = append(ro, unix.TCPRepairOpt{Code: unix.TCPOPT_WINDOW, Val: uint32(t.SndWscale) | uint32(t.RcvWscale)<<16})
	}
	if t.Options&image.TCPIOptTimestamps != 0 {
		ro = append(ro, unix.TCPRepairOpt{Code: unix.TCPOPT_TIMESTAMP})
	}
	ro = append(ro, unix.TCPRepairOpt{Code: unix.TCPOPT_MAXSEG, Val: uint32(t.MSS)})
	if err := unix.SetsockoptTCPRepairOpt(fd, unix.IPPROTO_TCP, unix.TCP_REPAIR_OPTIONS, ro); err != nil {
		return fmt.Errorf("TCP_REPAIR_OPTIONS: %w", err)
	}
	if t.Options&image.TCPIOptTimestamps != 0 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_TIMESTAMP, int(t.Timestamp)); err != nil {
			return fmt.Errorf("setsockopt TCP_TIMESTAMP: %w", err)
		}
	}
	if err := fillQueue(fd, tcpRecvQueue, t.RcvQueue); err != nil {
		return fmt.Errorf("receive queue: %w", err)
	}
	sent := len(t.SndQueue) - t.Unsent
	if err := fillQueue(fd, tcpSendQueue, t.SndQueue[:sent]); err != nil {
		return fmt.Errorf("send queue: %w", err)
	}
	w := tcpRepairWindow{SndWl1: t.SndWl1, SndWnd: t.SndWnd, MaxWindow: t.MaxWindow, RcvWnd: t.RcvWnd, RcvWup: t.RcvWup}
	if err := setOpt(fd, unix.IPPROTO_TCP, unix.TCP_REPAIR_WINDOW, (*[unsafe.Sizeof(w)]byte)(unsafe.Pointer(&w))[:]); err != nil {
		return fmt.Errorf("TCP_REPAIR_WINDOW: %w", err)
	}
	if t.Unsent > 0 {
		// Never sent: queued as a program's send, outside repair mode
		// (the lock drops it until the restore ends, then it goes).
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_OFF_NO_WP); err != nil {
			return fmt.Errorf("TCP_REPAIR off: %w", err)
		}
		if err := sendAll(fd, t.SndQueue[sent:], false); err != nil {
			return fmt.Errorf("unsent bytes: %w", err)
		}
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_ON); err != nil {
			return fmt.Errorf("TCP_REPAIR on: %w", err)
		}
	}
	return unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_REPAIR_QUEUE, tcpNoQueue)
}

// setQueueSeq sets the sequence number of queue q of fd.
func setQueueSeq(fd, q int, seq uint32) error {
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_REPAIR_QUEUE, q); err != nil {
		return fmt.Errorf("TCP_REPAIR_QUEUE %d: %w", q, err)
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_QUEUE_SEQ, int(int32(seq))); err != nil {
		return fmt.Errorf("TCP_QUEUE_SEQ %d of queue %d: %w", seq, q, err)
	}
	return nil
}

// fillQueue appends b to queue q of fd (in repair mode).
func fillQueue(fd, q int, b []byte) error {
	if len(b) == 0 {
		return nil
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_REPAIR_QUEUE, q); err != nil {
		return fmt.Errorf("TCP_REPAIR_QUEUE %d: %w", q, err)
	}
	return sendAll(fd, b, q == tcpRecvQueue)
}

// sendAll sends b on fd without blocking, in chunks the kernel can
// allocate (halved on ENOMEM, as CRIU does). The bytes were in the
// queue at dump, but the kernel may count them as more memory now: when
// the buffer (SO_SNDBUF, or SO_RCVBUF for the receive queue in repair
// mode) is full, it is raised (SO_*BUFFORCE) for the time of the sends
// and set back after.
func sendAll(fd int, b []byte, rcv bool) error {
	opt, force := unix.SO_SNDBUF, unix.SO_SNDBUFFORCE
	if rcv {
		opt, force = unix.SO_RCVBUF, unix.SO_RCVBUFFORCE
	}
	chunk, raised := 256<<10, -1
	defer func() {
		if raised >= 0 {
			unix.SetsockoptInt(fd, unix.SOL_SOCKET, force, raised/2)
		}
	}()
	for len(b) > 0 {
		n, err := unix.SendmsgN(fd, b[:min(chunk, len(b))], nil, nil, unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL)
		if errors.Is(err, unix.ENOMEM) && chunk > 1024 {
			chunk /= 2
			continue
		}
		if (errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.ENOMEM)) && raised < 0 {
			if raised, err = unix.GetsockoptInt(fd, unix.SOL_SOCKET, opt); err != nil {
				return fmt.Errorf("getsockopt buffer size: %w", err)
			}
			if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, force, raised+4*len(b)); err != nil {
				return fmt.Errorf("raise the buffer for %d bytes: %w", len(b), err)
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("send %d bytes (%d left): %w", min(chunk, len(b)), len(b), err)
		}
		b = b[n:]
	}
	return nil
}
