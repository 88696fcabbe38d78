package mem

import (
	"os"
	"reflect"
	"testing"
	"unsafe"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/procfs"
	"github.com/rtcr/rtcr/internal/track"
	"golang.org/x/sys/unix"
)

// TestScanRemote: the pages of private anonymous memory a post-copy dump
// records are those that exist, the same from PAGEMAP_SCAN as from the
// pagemap entries.
func TestScanRemote(t *testing.T) {
	const n = 64
	b, err := unix.Mmap(-1, 0, n*image.PageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(b)
	for _, i := range []int{0, 1, 5, 60, 61, 62, 63} {
		b[i*image.PageSize] = 1
	}
	start := uint64(uintptr(unsafe.Pointer(&b[0])))
	v := image.VMA{Start: start, End: start + n*image.PageSize, Kind: image.KindAnon, Prot: unix.PROT_READ | unix.PROT_WRITE}
	keep, err := pageFilter(os.Getpid(), v)
	if err != nil {
		t.Fatal(err)
	}
	pm, err := procfs.OpenPagemap(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	defer pm.Close()
	var entries []uint64
	fromEntries := v
	if err := scanRemoteEntries(pm, &fromEntries, keep, &entries); err != nil {
		t.Fatal(err)
	}
	want := []image.PageSpan{{Addr: start, Count: 2}, {Addr: start + 5*image.PageSize, Count: 1}, {Addr: start + 60*image.PageSize, Count: 4}}
	if !reflect.DeepEqual(fromEntries.Remote, want) {
		t.Errorf("from pagemap entries: %+v, want %+v", fromEntries.Remote, want)
	}
	sc, err := track.OpenScanner(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	if _, err := sc.Existing(v.Start, v.End); err != nil {
		t.Skipf("no PAGEMAP_SCAN here: %v", err)
	}
	fromScan := v
	if err := scanRemote(pm, sc, &fromScan, keep, &entries); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(fromScan.Remote, want) {
		t.Errorf("from PAGEMAP_SCAN: %+v, want %+v", fromScan.Remote, want)
	}
}
