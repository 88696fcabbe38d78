package track

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"unsafe"

	"github.com/rtcr/rtcr/internal/abi"
	"golang.org/x/sys/unix"
)

// vecLen is the number of regions one PAGEMAP_SCAN call returns: larger
// vectors reported a wrong walk_end on our kernel (DESIGN.md).
const vecLen = 512

// Scanner runs PAGEMAP_SCAN over another process's memory.
type Scanner struct {
	pid int
	pm  *os.File
	vec []abi.PageRegion
}

// OpenScanner opens /proc/PID/pagemap of pid for scanning.
func OpenScanner(pid int) (*Scanner, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/pagemap", pid))
	if err != nil {
		return nil, fmt.Errorf("open pagemap of %d: %w", pid, err)
	}
	return &Scanner{pid: pid, pm: f, vec: make([]abi.PageRegion, vecLen)}, nil
}

// Close closes the scanner.
func (s *Scanner) Close() error { return s.pm.Close() }

// Written returns the ranges of [start, end) written since they were last
// protected, and protects them again, atomically for each page. The range
// must be registered for async write-protect tracking.
func (s *Scanner) Written(start, end uint64) ([][2]uint64, error) {
	return s.scan(start, end, abi.PM_SCAN_WP_MATCHING|abi.PM_SCAN_CHECK_WPASYNC, 0, abi.PAGE_IS_WRITTEN)
}

// Peek returns the ranges of [start, end) written since they were last
// protected, without protecting them again: shared memory is scanned in
// every view before any page is copied, and protected after the copy
// (Protect); a dump that ends the tracking scans so too. A range not
// registered for async write-protect tracking (a mapping made or moved
// since) fails with an error that is both ErrNotRegistered and EPERM.
func (s *Scanner) Peek(start, end uint64) ([][2]uint64, error) {
	out, err := s.scan(start, end, abi.PM_SCAN_CHECK_WPASYNC, 0, abi.PAGE_IS_WRITTEN)
	if errors.Is(err, unix.EPERM) {
		// Both: callers test either (a dump's early save of a mapping
		// made since the parent tests EPERM, as Written gives it).
		return nil, fmt.Errorf("%#x-%#x of %d: %w (%w)", start, end, s.pid, ErrNotRegistered, err)
	}
	return out, err
}

// ErrNotRegistered reports a range not registered for tracking.
var ErrNotRegistered = errors.New("not registered for write-protect tracking")

// Empty returns the ranges of [start, end) with neither a page nor a swap
// entry (nor a protection marker): never populated since tracking began,
// or dropped (MADV_DONTNEED). Their content is zero, whatever an earlier
// image holds.
func (s *Scanner) Empty(start, end uint64) ([][2]uint64, error) {
	const c = abi.PAGE_IS_PRESENT | abi.PAGE_IS_SWAPPED
	return s.scan(start, end, 0, c, c)
}

// Existing returns the ranges of [start, end) with a page or a swap
// entry: the pages a dump would save (a write-protect marker of dirty
// tracking counts too: its page reads as zero).
func (s *Scanner) Existing(start, end uint64) ([][2]uint64, error) {
	const c = abi.PAGE_IS_PRESENT | abi.PAGE_IS_SWAPPED
	return s.scanAny(start, end, c)
}

// scanAny is scan of the pages with any of the categories anyof.
func (s *Scanner) scanAny(start, end, anyof uint64) ([][2]uint64, error) {
	return s.run(start, end, 0, 0, 0, anyof)
}

// scan runs PAGEMAP_SCAN over [start, end) with flags, pages whose
// categories, inverted by inverted, all have mask, and returns their
// ranges (joined when adjacent).
func (s *Scanner) scan(start, end uint64, flags, inverted, mask uint64) ([][2]uint64, error) {
	return s.run(start, end, flags, inverted, mask, 0)
}

// run is scan with the pages also required to have one of anyof (0: no
// such condition).
func (s *Scanner) run(start, end uint64, flags, inverted, mask, anyof uint64) ([][2]uint64, error) {
	var out [][2]uint64
	for start < end {
		arg := abi.PmScanArg{
			Size:              uint64(unsafe.Sizeof(abi.PmScanArg{})),
			Flags:             flags,
			Start:             start,
			End:               end,
			Vec:               uint64(uintptr(unsafe.Pointer(&s.vec[0]))),
			VecLen:            uint64(len(s.vec)),
			CategoryInverted:  inverted,
			CategoryMask:      mask,
			CategoryAnyofMask: anyof,
			ReturnMask:        mask | anyof,
		}
		n, _, errno := unix.Syscall(unix.SYS_IOCTL, s.pm.Fd(), abi.PAGEMAP_SCAN, uintptr(unsafe.Pointer(&arg)))
		runtime.KeepAlive(s.vec)
		if errno == unix.EINTR || errno == unix.EAGAIN {
			continue
		}
		if errno != 0 {
			return nil, fmt.Errorf("PAGEMAP_SCAN %#x-%#x of %d: %w", start, end, s.pid, errno)
		}
		if n > uintptr(len(s.vec)) || arg.WalkEnd <= start || arg.WalkEnd > end {
			return nil, fmt.Errorf("PAGEMAP_SCAN %#x-%#x of %d: %d regions, walk end %#x", start, end, s.pid, n, arg.WalkEnd)
		}
		for _, r := range s.vec[:n] {
			if r.Start < start || r.End > arg.WalkEnd || r.Start >= r.End {
				return nil, fmt.Errorf("PAGEMAP_SCAN %#x-%#x of %d: region %#x-%#x outside the walk", start, end, s.pid, r.Start, r.End)
			}
			if k := len(out) - 1; k >= 0 && out[k][1] == r.Start {
				out[k][1] = r.End
			} else {
				out = append(out, [2]uint64{r.Start, r.End})
			}
		}
		start = arg.WalkEnd
	}
	return out, nil
}
