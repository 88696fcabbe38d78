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
