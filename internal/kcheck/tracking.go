package kcheck

import (
	"errors"
	"fmt"
	"os"
	"unsafe"

	"github.com/rtcr/rtcr/internal/procfs"
	"github.com/rtcr/rtcr/internal/vmaflags"
	"golang.org/x/sys/unix"
)

// pageSize is the page size of x86_64.
const pageSize = 4096

// checkUffdWP creates a userfaultfd and enables asynchronous write-protect
// (UFFD_FEATURE_WP_ASYNC with WP_UNPOPULATED), which incremental
// checkpoints use for dirty tracking.
func checkUffdWP() (string, error) {
	fd, _, errno := unix.Syscall(unix.SYS_USERFAULTFD, unix.O_CLOEXEC|unix.O_NONBLOCK|uffdUserModeOnly, 0, 0)
	if errno != 0 {
		return "", fmt.Errorf("userfaultfd: %w", errno)
	}
	defer unix.Close(int(fd))
	api := uffdioAPIArg{API: uffdAPI, Features: uffdFeatureWPAsync | uffdFeatureWPUnpopulated}
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, fd, uffdioAPI, uintptr(unsafe.Pointer(&api))); errno != 0 {
		return "", fmt.Errorf("UFFDIO_API with WP_ASYNC|WP_UNPOPULATED: %w", errno)
	}
	return fmt.Sprintf("UFFDIO_API accepted WP_ASYNC|WP_UNPOPULATED (features %#x)", api.Features), nil
}

// checkPagemapScan runs the PAGEMAP_SCAN ioctl over one page of our own
// memory, written first so that it is present.
func checkPagemapScan() (string, error) {
	// Page 0 is scanned; page 1 holds the output vector, outside Go's heap
	// so the kernel may write it while only its address is passed.
	mem, err := unix.Mmap(-1, 0, 2*pageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return "", fmt.Errorf("mmap: %w", err)
	}
	defer unix.Munmap(mem)
	mem[0] = 1
	const vecLen = 4
	vec := (*[vecLen]pageRegion)(unsafe.Pointer(&mem[pageSize]))
	start := uint64(uintptr(unsafe.Pointer(&mem[0])))

	f, err := os.Open("/proc/self/pagemap")
	if err != nil {
		return "", err
	}
	defer f.Close()
	arg := pmScanArg{
		Size:              uint64(unsafe.Sizeof(pmScanArg{})),
		Start:             start,
		End:               start + pageSize,
		Vec:               uint64(uintptr(unsafe.Pointer(vec))),
		VecLen:            vecLen,
		CategoryAnyofMask: pageIsPresent,
		ReturnMask:        pageIsPresent,
	}
	n, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), pagemapScan, uintptr(unsafe.Pointer(&arg)))
	if errno != 0 {
		return "", fmt.Errorf("ioctl PAGEMAP_SCAN: %w", errno)
	}
	if n != 1 || vec[0].Start != start || vec[0].End != start+pageSize || vec[0].Categories != pageIsPresent {
		return "", fmt.Errorf("PAGEMAP_SCAN of one present page returned %d regions, first %+v", n, vec[0])
	}
	return "found the one present page of a test mapping", nil
}

// errSoftDirtyAbsent is the Detail of a kernel without CONFIG_MEM_SOFT_DIRTY.
var errSoftDirtyAbsent = errors.New("absent: dirty tracking will use userfaultfd-wp")

// checkSoftDirty tests soft-dirty tracking (CONFIG_MEM_SOFT_DIRTY): clear
// the bits with /proc/self/clear_refs, write a page, and look for the bit
// in its pagemap entry. Kernels without it may accept the clear_refs write,
// so the pagemap entry decides.
func checkSoftDirty() (string, error) {
	mem, err := unix.Mmap(-1, 0, pageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return "", fmt.Errorf("mmap: %w", err)
	}
	defer unix.Munmap(mem)
	mem[0] = 1
	err = os.WriteFile("/proc/self/clear_refs", []byte("4"), 0)
	if errors.Is(err, unix.EINVAL) {
		return "", errSoftDirtyAbsent
	}
	if err != nil {
		return "", fmt.Errorf("clear soft-dirty bits: %w", err)
	}
	mem[0] = 2
	pm, err := procfs.OpenPagemap(os.Getpid())
	if err != nil {
		return "", err
	}
	defer pm.Close()
	start := uint64(uintptr(unsafe.Pointer(&mem[0])))
	e, err := pm.Read(start, start+pageSize, nil)
	if err != nil {
		return "", err
	}
	if e[0]&procfs.PM_SOFT_DIRTY == 0 {
		return "", errSoftDirtyAbsent
	}
	return "present: a page written after clear_refs shows the soft-dirty bit", nil
}

// checkVMAIter lists our own mappings with the BPF VMA iterator that lets
// an increment read /proc/PID/smaps before its freeze (internal/vmaflags).
func checkVMAIter() (string, error) {
	it, err := vmaflags.Open(os.Getpid())
	if err != nil {
		return "", err
	}
	defer it.Close()
	vmas, err := it.Read(nil)
	if err != nil {
		return "", err
	}
	if len(vmas) == 0 {
		return "", fmt.Errorf("the iterator listed no mapping of %d", os.Getpid())
	}
	return fmt.Sprintf("%d mappings of rtcr listed with their flags", len(vmas)), nil
}
