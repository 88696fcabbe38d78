package wire

import (
	"encoding/binary"
	"fmt"
	"sort"

	"github.com/rtcr/rtcr/internal/image"
)

// The page phase of a post-copy migration (ModePostCopy), from Stored on:
// the destination restores the image without the pages it leaves out
// (image.VMA.Remote), lets the copy run at once and asks the frozen
// source for them (the restore itself may). In any order until PagesIn:
//
//	S → C  PageRequest  id:u32be pid:u32be addr:u64be count:u32be
//	C → S  PageData     id:u32be pid:u32be addr:u64be page data   (one or
//	       more per request, in address order, together exactly count
//	       pages; small requests, a fault's, are answered before large
//	       ones, the prefetcher's, between frames)
//	S → C  Restored     pid:u32be program:u32be   (the copy runs), once
//	S → C  PagesIn      (every page is in: the source may be killed)
//	C → S  Go           (the source is dead: the copy may run on alone;
//	       without it the destination kills its copy)
//
// pid and addr are the image's; a request outside one Remote span of the
// image, or data the destination did not ask for, is a protocol
// violation that ends the migration.
const (
	PageRequest Type = 20
	PageData    Type = 21
	PagesIn     Type = 22
)

func init() {
	typeNames[PageRequest] = "page-request"
	typeNames[PageData] = "page-data"
	typeNames[PagesIn] = "pages-in"
}

// ModePostCopy sends the image of a post-copy dump: the server restores
// it lazily and lets it run at once while the source, frozen, serves the
// missing pages (the page phase above).
const ModePostCopy Mode = 5

const (
	// MaxRequestPages bounds the pages of one PageRequest (2 MiB, the
	// most one lazy.Source Fetch asks).
	MaxRequestPages = 512
	// MaxDataPages bounds the pages of one PageData frame (512 KiB):
	// a fault's request waits at most for one such frame.
	MaxDataPages = 128
	// pageHeader is the size of a PageData header (and of a
	// PageRequest without its count).
	pageHeader = 16
)

// PageReq is one PageRequest.
type PageReq struct {
	ID    uint32
	Pid   int
	Addr  uint64
	Count int
}

// EncodePageRequest encodes r.
func EncodePageRequest(r PageReq) []byte {
	b := binary.BigEndian.AppendUint32(nil, r.ID)
	b = binary.BigEndian.AppendUint32(b, uint32(r.Pid))
	b = binary.BigEndian.AppendUint64(b, r.Addr)
	return binary.BigEndian.AppendUint32(b, uint32(r.Count))
}

// ParsePageRequest decodes a PageRequest payload, bounding its fields
// (whether the image lists the pages is the PageSet's to say).
func ParsePageRequest(p []byte) (PageReq, error) {
	if len(p) != pageHeader+4 {
		return PageReq{}, fmt.Errorf("page request of %d bytes: %w", len(p), ErrProtocol)
	}
	r := PageReq{
		ID:    binary.BigEndian.Uint32(p),
		Pid:   int(binary.BigEndian.Uint32(p[4:])),
		Addr:  binary.BigEndian.Uint64(p[8:]),
		Count: int(binary.BigEndian.Uint32(p[16:])),
	}
	if r.Count < 1 || r.Count > MaxRequestPages || r.Addr%image.PageSize != 0 || r.Pid <= 0 || r.Pid >= image.MaxPid {
		return PageReq{}, fmt.Errorf("page request %d: pid %d, %d pages at %#x out of bounds: %w", r.ID, r.Pid, r.Count, r.Addr, ErrProtocol)
	}
	return r, nil
}

// AppendPageDataHeader appends the header of a PageData frame carrying
// pages of pid at addr for request id; the page data follows.
func AppendPageDataHeader(b []byte, id uint32, pid int, addr uint64) []byte {
	b = binary.BigEndian.AppendUint32(b, id)
	b = binary.BigEndian.AppendUint32(b, uint32(pid))
	return binary.BigEndian.AppendUint64(b, addr)
}

// ParsePageData decodes a PageData payload: 1 to MaxDataPages whole pages.
func ParsePageData(p []byte) (id uint32, pid int, addr uint64, data []byte, err error) {
	if len(p) < pageHeader+image.PageSize || (len(p)-pageHeader)%image.PageSize != 0 || len(p)-pageHeader > MaxDataPages*image.PageSize {
		return 0, 0, 0, nil, fmt.Errorf("page data of %d bytes: %w", len(p), ErrProtocol)
	}
	return binary.BigEndian.Uint32(p), int(binary.BigEndian.Uint32(p[4:])), binary.BigEndian.Uint64(p[8:]), p[pageHeader:], nil
}

// PageSet is the pages a post-copy image leaves out, by image pid: the
// Remote spans of its VMAs.
type PageSet struct {
	spans map[int][]image.PageSpan // sorted by address
	pages uint64
}

// NewPageSet collects the Remote spans of c (validated: sorted and
// disjoint within a process).
func NewPageSet(c *image.Checkpoint) *PageSet {
	s := &PageSet{spans: map[int][]image.PageSpan{}}
	for i := range c.Processes {
		p := &c.Processes[i]
		for j := range p.VMAs {
			for _, sp := range p.VMAs[j].Remote {
				s.spans[p.Pid] = append(s.spans[p.Pid], sp)
				s.pages += sp.Count
			}
		}
	}
	return s
}

// Pages is the number of pages in the set.
func (s *PageSet) Pages() uint64 { return s.pages }

// Contains reports whether count pages of pid at addr lie within one span.
func (s *PageSet) Contains(pid int, addr uint64, count int) bool {
	sp := s.spans[pid]
	i := sort.Search(len(sp), func(i int) bool { return sp[i].End() > addr })
	if i == len(sp) || sp[i].Addr > addr || count < 0 {
		return false
	}
	return uint64(count) <= (sp[i].End()-addr)/image.PageSize
}
