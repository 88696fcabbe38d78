package abi

// userfaultfd, include/uapi/linux/userfaultfd.h.
const (
	UFFD_API                        = 0xAA
	UFFD_USER_MODE_ONLY             = 1
	UFFDIO_API                      = 0xc018aa3f // _IOWR(0xAA, 0x3F, struct uffdio_api)
	UFFDIO_REGISTER                 = 0xc020aa00 // _IOWR(0xAA, 0x00, struct uffdio_register)
	UFFDIO_UNREGISTER               = 0x8010aa01 // _IOR(0xAA, 0x01, struct uffdio_range)
	UFFDIO_WRITEPROTECT             = 0xc018aa06 // _IOWR(0xAA, 0x06, struct uffdio_writeprotect)
	UFFDIO_REGISTER_MODE_WP         = 1 << 1
	UFFDIO_WRITEPROTECT_MODE_WP     = 1 << 0
	UFFD_FEATURE_WP_HUGETLBFS_SHMEM = 1 << 12
	UFFD_FEATURE_WP_UNPOPULATED     = 1 << 13
	UFFD_FEATURE_WP_ASYNC           = 1 << 15
)

// UffdioAPI is struct uffdio_api.
type UffdioAPI struct {
	API      uint64
	Features uint64
	Ioctls   uint64
}

// UffdioRange is struct uffdio_range.
type UffdioRange struct {
	Start uint64
	Len   uint64
}

// UffdioRegister is struct uffdio_register.
type UffdioRegister struct {
	Range  UffdioRange
	Mode   uint64
	Ioctls uint64 // out
}

// UffdioWriteprotect is struct uffdio_writeprotect.
type UffdioWriteprotect struct {
	Range UffdioRange
	Mode  uint64
}

// PAGEMAP_SCAN, include/uapi/linux/fs.h and the kernel's
// Documentation/admin-guide/mm/pagemap.rst.
const (
	PAGEMAP_SCAN          = 0xc0606610 // _IOWR('f', 16, struct pm_scan_arg)
	PM_SCAN_WP_MATCHING   = 1 << 0     // write-protect the pages that match
	PM_SCAN_CHECK_WPASYNC = 1 << 1     // fail unless the range is registered for async WP
	PAGE_IS_WPALLOWED     = 1 << 0
	PAGE_IS_WRITTEN       = 1 << 1
	PAGE_IS_FILE          = 1 << 2
	PAGE_IS_PRESENT       = 1 << 3
	PAGE_IS_SWAPPED       = 1 << 4
	PAGE_IS_PFNZERO       = 1 << 5
	PAGE_IS_HUGE          = 1 << 6
)

// PmScanArg is struct pm_scan_arg.
type PmScanArg struct {
	Size              uint64 // sizeof(struct pm_scan_arg)
	Flags             uint64 // PM_SCAN_*
	Start             uint64 // start of the range (page-aligned)
	End               uint64 // end of the range (exclusive)
	WalkEnd           uint64 // out: where the walk stopped
	Vec               uint64 // address of a PageRegion array
	VecLen            uint64 // entries in Vec
	MaxPages          uint64 // stop after this many matching pages (0: no limit)
	CategoryInverted  uint64 // PAGE_IS_* categories inverted before matching
	CategoryMask      uint64 // all of these must be set
	CategoryAnyofMask uint64 // one of these must be set (0: no condition)
	ReturnMask        uint64 // categories reported in PageRegion.Categories
}

// PageRegion is struct page_region.
type PageRegion struct {
	Start      uint64
	End        uint64
	Categories uint64
}

// userfaultfd missing mode and its events, for lazy restore
// (include/uapi/linux/userfaultfd.h).
const (
	UFFDIO_REGISTER_MODE_MISSING = 1 << 0
	UFFDIO_WAKE                  = 0x8010aa02 // _IOR(0xAA, 0x02, struct uffdio_range)
	UFFDIO_COPY                  = 0xc028aa03 // _IOWR(0xAA, 0x03, struct uffdio_copy)
	UFFDIO_ZEROPAGE              = 0xc020aa04 // _IOWR(0xAA, 0x04, struct uffdio_zeropage)
	UFFD_FEATURE_EVENT_FORK      = 1 << 1
	UFFD_FEATURE_EVENT_REMAP     = 1 << 2
	UFFD_FEATURE_EVENT_REMOVE    = 1 << 3
	UFFD_FEATURE_EVENT_UNMAP     = 1 << 6
	UFFD_FEATURE_THREAD_ID       = 1 << 8
	UFFD_EVENT_PAGEFAULT         = 0x12
	UFFD_EVENT_FORK              = 0x13
	UFFD_EVENT_REMAP             = 0x14
	UFFD_EVENT_REMOVE            = 0x15
	UFFD_EVENT_UNMAP             = 0x16
)

// UffdioCopy is struct uffdio_copy.
type UffdioCopy struct {
	Dst  uint64
	Src  uint64
	Len  uint64
	Mode uint64
	Copy int64 // out: bytes copied, or -errno
}

// UffdioZeropage is struct uffdio_zeropage.
type UffdioZeropage struct {
	Range    UffdioRange
	Mode     uint64
	Zeropage int64 // out: bytes mapped, or -errno
}

// UffdMsg is struct uffd_msg: Event, then 24 bytes of arguments, read
// with the accessors below.
type UffdMsg struct {
	Event uint8
	_     [7]uint8
	Arg   [3]uint64
}

// FaultAddr is the address of an UFFD_EVENT_PAGEFAULT.
func (m *UffdMsg) FaultAddr() uint64 { return m.Arg[1] }

// FaultTid is the faulting thread of an UFFD_EVENT_PAGEFAULT (with
// UFFD_FEATURE_THREAD_ID), in its own pid namespace.
func (m *UffdMsg) FaultTid() int { return int(uint32(m.Arg[2])) }

// ForkFd is the new userfaultfd of an UFFD_EVENT_FORK (in the reader).
func (m *UffdMsg) ForkFd() int { return int(uint32(m.Arg[0])) }

// Remap returns from, to and len of an UFFD_EVENT_REMAP.
func (m *UffdMsg) Remap() (from, to, n uint64) { return m.Arg[0], m.Arg[1], m.Arg[2] }

// Range returns start and end of an UFFD_EVENT_REMOVE or UFFD_EVENT_UNMAP.
func (m *UffdMsg) Range() (start, end uint64) { return m.Arg[0], m.Arg[1] }
