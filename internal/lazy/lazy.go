// Package lazy serves the memory of a lazily restored process tree: the
// restore maps private anonymous memory without its pages and registers
// it on a userfaultfd (missing mode, with fork, mremap, remove and unmap
// events); the process runs at once, and a Server copies each page in
// (UFFDIO_COPY) when it is first touched, and every other page in
// address order in the background, until all are in. Where the pages come
// from is a Source: the image's own page files for `rtcr restore --lazy`,
// the frozen source machine for post-copy migration.
package lazy

// Source gives the contents of pages a lazy restore left out.
//
// Fetch fills buf (a whole number of pages, at most MaxFetch bytes) with
// the memory of image process pid (its pid in the image) at addr (its
// address in the image, page aligned), all of it within one run of saved
// pages of that process. It may be called from several goroutines at
// once. An error is final: the restored processes cannot go on without
// the pages, and the restore kills them (see Server).
type Source interface {
	Fetch(pid int, addr uint64, buf []byte) error
}

// MaxFetch bounds one Fetch: a fault asks for one page to a few dozen,
// the prefetcher for up to this much.
const MaxFetch = 2 << 20

// Progress says how far a lazy restore is.
type Progress struct {
	// Pages is the number of saved pages left out by the restore (the
	// pages of every restored process's lazy ranges).
	Pages int64
	// In counts those brought in (copied, or no longer wanted: unmapped or
	// dropped by the program with MADV_DONTNEED before they came).
	In int64
	// Faults counts the faults served, Fetched the bytes fetched.
	Faults  int64
	Fetched int64
	// Early counts the faults that came before the processes ran (while
	// the restore injected calls); the restore writes the pages the kernel
	// touches then at once, so it stays 0 and a Source is never asked
	// before the processes run.
	Early int64
}
