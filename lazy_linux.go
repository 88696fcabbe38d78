package rtcr

import (
	"time"

	"github.com/rtcr/rtcr/internal/lazy"
)

// LazyRestore is a lazy restore whose processes run while their pages
// come in (RestoreOptions.Lazy).
type LazyRestore struct {
	srv   *lazy.Server
	start time.Time
	done  chan struct{}
	err   error
	allIn time.Duration
}

// Progress reports how many of the pages left out are in.
func (l *LazyRestore) Progress() lazy.Progress { return l.srv.Progress() }

// Wait waits until every page is in and rtcr has let go of the
// processes, and returns how long that took from the start of the
// restore. An error means the pages could not all be brought in: the
// restored processes were killed.
func (l *LazyRestore) Wait() (time.Duration, error) {
	<-l.done
	return l.allIn, l.err
}
