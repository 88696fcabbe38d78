package image

import (
	"errors"
	"fmt"
)

// Sentinel errors returned (wrapped) by the image readers and by Validate.
// Test for them with errors.Is; the error text carries the details (file,
// pid, address, fd …).
var (
	// ErrNotImage means a file is not an rtcr image file (bad magic).
	ErrNotImage = errors.New("not an rtcr image")
	// ErrVersion means an image was written in a format version this rtcr
	// cannot read.
	ErrVersion = errors.New("unsupported image format version")
	// ErrCorrupt means an image is damaged: checksum mismatch, truncated or
	// extra data, undecodable payload, or semantically inconsistent content.
	ErrCorrupt = errors.New("corrupt image")
)

// kindError is an error of one of the sentinel kinds whose text is fully
// described by err (so messages read naturally, e.g. "DIR/manifest.img is
// not an rtcr image"), while errors.Is still finds both the sentinel and any
// cause wrapped inside err.
type kindError struct {
	kind error
	err  error
}

func (e *kindError) Error() string { return e.err.Error() }

func (e *kindError) Unwrap() []error { return []error{e.kind, e.err} }

// newError returns an error of the given sentinel kind formatted like
// fmt.Errorf (so %w in format wraps a cause).
func newError(kind error, format string, args ...any) error {
	return &kindError{kind: kind, err: fmt.Errorf(format, args...)}
}

// corruptf returns an ErrCorrupt error formatted like fmt.Errorf.
func corruptf(format string, args ...any) error {
	return newError(ErrCorrupt, format, args...)
}
