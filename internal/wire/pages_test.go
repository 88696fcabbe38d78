package wire

import (
	"errors"
	"testing"

	"github.com/rtcr/rtcr/internal/image"
)

// TestPageFrames: page requests and page data out of bounds are protocol
// violations; a PageSet admits only requests inside one of its spans.
func TestPageFrames(t *testing.T) {
	r := PageReq{ID: 7, Pid: 3, Addr: 0x10000, Count: 2}
	got, err := ParsePageRequest(EncodePageRequest(r))
	if err != nil || got != r {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	for _, bad := range []PageReq{
		{Pid: 3, Addr: 0x10001, Count: 1},
		{Pid: 3, Addr: 0x10000, Count: 0},
		{Pid: 3, Addr: 0x10000, Count: MaxRequestPages + 1},
		{Pid: 0, Addr: 0x10000, Count: 1},
		{Pid: image.MaxPid, Addr: 0x10000, Count: 1},
	} {
		if _, err := ParsePageRequest(EncodePageRequest(bad)); !errors.Is(err, ErrProtocol) {
			t.Errorf("request %+v: %v, want a protocol violation", bad, err)
		}
	}
	if _, err := ParsePageRequest(make([]byte, 19)); !errors.Is(err, ErrProtocol) {
		t.Errorf("short request: %v", err)
	}
	hdr := AppendPageDataHeader(nil, 7, 3, 0x10000)
	for _, n := range []int{0, 100, image.PageSize + 1, (MaxDataPages + 1) * image.PageSize} {
		if _, _, _, _, err := ParsePageData(append(hdr, make([]byte, n)...)); !errors.Is(err, ErrProtocol) {
			t.Errorf("page data of %d bytes: %v, want a protocol violation", n, err)
		}
	}
	id, pid, addr, data, err := ParsePageData(append(hdr, make([]byte, 2*image.PageSize)...))
	if err != nil || id != 7 || pid != 3 || addr != 0x10000 || len(data) != 2*image.PageSize {
		t.Errorf("page data: %d %d %#x %d %v", id, pid, addr, len(data), err)
	}

	c := &image.Checkpoint{Processes: []image.Process{{Pid: 3, VMAs: []image.VMA{
		{Start: 0x10000, End: 0x20000, Remote: []image.PageSpan{{Addr: 0x10000, Count: 2}, {Addr: 0x14000, Count: 4}}},
	}}}}
	set := NewPageSet(c)
	if set.Pages() != 6 {
		t.Errorf("pages %d, want 6", set.Pages())
	}
	for _, tc := range []struct {
		pid   int
		addr  uint64
		count int
		want  bool
	}{
		{3, 0x10000, 2, true}, {3, 0x11000, 1, true}, {3, 0x10000, 3, false}, {3, 0x12000, 1, false},
		{3, 0x14000, 4, true}, {3, 0x15000, 4, false}, {4, 0x10000, 1, false}, {3, 0xf000, 1, false},
	} {
		if got := set.Contains(tc.pid, tc.addr, tc.count); got != tc.want {
			t.Errorf("Contains(%d, %#x, %d) = %v, want %v", tc.pid, tc.addr, tc.count, got, tc.want)
		}
	}
}
