package rtcr

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/rtcr/rtcr/internal/image"
)

// commitManifest checks the checkpoint c of process pid, records its
// freeze and writes its manifest: the commit point of the dump.
func commitManifest(log *slog.Logger, stage *image.Stage, c *image.Checkpoint, pid int, freeze time.Duration) error {
	manifest := newStepTimer(log, pid)
	if err := c.Validate(); err != nil {
		return fmt.Errorf("dump %d: image about to be written is inconsistent: %w", pid, err)
	}
	c.FreezeNs = int64(freeze)
	if err := stage.WriteManifest(c); err != nil {
		return fmt.Errorf("dump %d: %w", pid, err)
	}
	manifest.done("manifest", "processes", len(c.Processes))
	return nil
}

// recordBudget records in c and stats how the freeze of a dump with a
// freeze budget (opts.MaxFreeze) went: its pre-copy rounds, the pages
// copied in them and in the freeze, and why it missed the budget.
func recordBudget(c *image.Checkpoint, opts DumpOptions, stats *DumpStats, tr *tracking, freeze time.Duration) {
	if opts.MaxFreeze <= 0 {
		return
	}
	b := tr.pre.result(opts.MaxFreeze, freeze, stats.MemoryTime, stats.PageBytes, tr.parent == nil)
	stats.Budget = b
	c.Budget = &image.FreezeBudget{MaxNs: int64(b.Max), Rounds: b.Rounds, PreCopied: b.PreCopiedPages, Frozen: b.FrozenPages, Over: b.Over}
}
