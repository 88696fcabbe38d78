package abi

import (
	"testing"
	"unsafe"
)

// ioc is the kernel's _IOC(dir, typ, nr, size) (include/uapi/asm-generic/ioctl.h).
func ioc(dir, typ, nr, size uintptr) uintptr { return dir<<30 | size<<16 | typ<<8 | nr }

// TestUffdLayout checks the structure sizes and ioctl numbers against the
// kernel's definitions.
func TestUffdLayout(t *testing.T) {
	const r, w = 2, 1
	cases := []struct {
		name      string
		got, want uintptr
	}{
		{"sizeof uffdio_api", unsafe.Sizeof(UffdioAPI{}), 24},
		{"sizeof uffdio_register", unsafe.Sizeof(UffdioRegister{}), 32},
		{"sizeof uffdio_writeprotect", unsafe.Sizeof(UffdioWriteprotect{}), 24},
		{"sizeof pm_scan_arg", unsafe.Sizeof(PmScanArg{}), 96},
		{"sizeof page_region", unsafe.Sizeof(PageRegion{}), 24},
		{"UFFDIO_API", UFFDIO_API, ioc(r|w, 0xAA, 0x3F, unsafe.Sizeof(UffdioAPI{}))},
		{"UFFDIO_REGISTER", UFFDIO_REGISTER, ioc(r|w, 0xAA, 0x00, unsafe.Sizeof(UffdioRegister{}))},
		{"UFFDIO_UNREGISTER", UFFDIO_UNREGISTER, ioc(r, 0xAA, 0x01, unsafe.Sizeof(UffdioRange{}))},
		{"UFFDIO_WRITEPROTECT", UFFDIO_WRITEPROTECT, ioc(r|w, 0xAA, 0x06, unsafe.Sizeof(UffdioWriteprotect{}))},
		{"PAGEMAP_SCAN", PAGEMAP_SCAN, ioc(r|w, 'f', 16, unsafe.Sizeof(PmScanArg{}))},
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("%s = %#x, want %#x", c.name, c.got, c.want)
		}
	}
}
