package kcheck

// Kernel ABI for the dirty-tracking probes. The lead may move these to
// internal/abi once incremental checkpoints use them.

// iowr is the kernel's _IOWR(typ, nr, size) ioctl request number
// (include/uapi/asm-generic/ioctl.h: dir<<30 | size<<16 | type<<8 | nr).
func iowr(typ, nr, size uintptr) uintptr {
	const iocRead, iocWrite = 2, 1
	return (iocRead|iocWrite)<<30 | size<<16 | typ<<8 | nr
}

// userfaultfd, include/uapi/linux/userfaultfd.h.
const (
	// uffdUserModeOnly is UFFD_USER_MODE_ONLY, a flag of userfaultfd(2):
	// handle faults from user mode only (allowed without privileges).
	uffdUserModeOnly = 1
	// uffdAPI is UFFD_API, the API version UFFDIO_API expects.
	uffdAPI = 0xAA
	// uffdioAPI is UFFDIO_API = _IOWR(0xAA, 0x3F, struct uffdio_api).
	uffdioAPI = 0xc018aa3f
	// uffdFeatureWPUnpopulated is UFFD_FEATURE_WP_UNPOPULATED (Linux 6.4):
	// write-protect also pages never faulted in.
	uffdFeatureWPUnpopulated = 1 << 13
	// uffdFeatureWPAsync is UFFD_FEATURE_WP_ASYNC (Linux 6.7): the kernel
	// resolves write-protect faults itself and records them for PAGEMAP_SCAN.
	uffdFeatureWPAsync = 1 << 15
)

// uffdioAPIArg is struct uffdio_api (include/uapi/linux/userfaultfd.h).
type uffdioAPIArg struct {
	API      uint64
	Features uint64
	Ioctls   uint64
}

// PAGEMAP_SCAN, include/uapi/linux/fs.h (see also the kernel's
// Documentation/admin-guide/mm/pagemap.rst).
const (
	// pagemapScan is PAGEMAP_SCAN = _IOWR('f', 16, struct pm_scan_arg).
	pagemapScan = 0xc0606610
	// pageIsPresent is PAGE_IS_PRESENT, a category of struct page_region.
	pageIsPresent = 1 << 3
)

// pmScanArg is struct pm_scan_arg (include/uapi/linux/fs.h).
type pmScanArg struct {
	Size              uint64 // sizeof(struct pm_scan_arg)
	Flags             uint64 // PM_SCAN_* operations
	Start             uint64 // start of the range to scan
	End               uint64 // end of the range (exclusive)
	WalkEnd           uint64 // out: where the scan stopped
	Vec               uint64 // address of a page_region array for the output
	VecLen            uint64 // entries in Vec
	MaxPages          uint64 // stop after this many pages (0: no limit)
	CategoryInverted  uint64 // PAGE_IS_* categories to invert before matching
	CategoryMask      uint64 // all of these must match
	CategoryAnyofMask uint64 // at least one of these must match
	ReturnMask        uint64 // categories reported in page_region.Categories
}

// pageRegion is struct page_region (include/uapi/linux/fs.h).
type pageRegion struct {
	Start      uint64
	End        uint64
	Categories uint64
}
