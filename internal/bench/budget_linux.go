package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/rtcr/rtcr"
	"github.com/rtcr/rtcr/internal/image"
)

// Budget holds the best times of the freeze budget benchmark over all
// runs (rtcr bench --incremental PCT --max-freeze D).
type Budget struct {
	Size    uint64
	Runs    int
	Percent float64
	Pages   int
	Max     time.Duration
	// Freeze and Dump are those of an increment without a budget,
	// BudgetFreeze and BudgetDump of one with it, after as many pages
	// were written (single pages spread evenly) since their parent;
	// Rounds and PreCopied are what its pre-copy did (last run).
	Freeze, Dump             time.Duration
	BudgetFreeze, BudgetDump time.Duration
	Rounds                   int
	PreCopied, Frozen        int64
}

// RunBudget measures, in each run, a process with size bytes resident:
// a full checkpoint with tracking, percent % of its pages written, an
// increment without a budget, as many pages written again, and an
// increment with the freeze budget max. The best of runs counts.
func RunBudget(dir string, size uint64, percent float64, runs int, maxFreeze time.Duration) (*Budget, error) {
	if size == 0 || size%image.PageSize != 0 || percent <= 0 || percent > 100 || maxFreeze <= 0 {
		return nil, fmt.Errorf("bench: size %d, percentage %v or budget %v out of range", size, percent, maxFreeze)
	}
	work, err := os.MkdirTemp(dir, "rtcr-bench-budget-")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	defer os.RemoveAll(work)
	npages := int(size / image.PageSize)
	res := &Budget{Size: size, Runs: runs, Percent: percent, Max: maxFreeze, Pages: max(1, int(float64(npages)*percent/100))}
	for i := 0; i < res.Runs; i++ {
		if err := budgetOnce(work, res); err != nil {
			return nil, fmt.Errorf("bench run %d: %w", i+1, err)
		}
	}
	return res, nil
}

func budgetOnce(work string, res *Budget) error {
	h, err := startHog(work, res.Size, true)
	if err != nil {
		return err
	}
	defer h.kill()
	dump := func(name, parent string, budget time.Duration) (*rtcr.DumpStats, error) {
		return rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: h.pid, Dir: filepath.Join(work, name),
			Parent: parent, LeaveRunning: true, TrackMem: true, MaxFreeze: budget})
	}
	for _, d := range []string{"full", "incr", "budget"} {
		defer os.RemoveAll(filepath.Join(work, d))
	}
	if _, err := dump("full", "", 0); err != nil {
		return err
	}
	if err := writeSpread(h, res.Pages, 1); err != nil {
		return err
	}
	st, err := dump("incr", "../full", 0)
	if err != nil {
		return err
	}
	best(&res.Freeze, st.Freeze)
	best(&res.Dump, st.Total)
	if err := writeSpread(h, res.Pages, 1); err != nil {
		return err
	}
	if st, err = dump("budget", "../incr", res.Max); err != nil {
		return err
	}
	best(&res.BudgetFreeze, st.Freeze)
	best(&res.BudgetDump, st.Total)
	res.Rounds, res.PreCopied, res.Frozen = st.Budget.Rounds, st.Budget.PreCopiedPages, st.Budget.FrozenPages
	return nil
}

// Print writes the budget benchmark's results.
func (r *Budget) Print(w io.Writer) {
	fmt.Fprintf(w, "freeze budget: %s resident, %v%% of the pages (%d) written before each increment, budget %v, best of %d runs\n",
		mib(r.Size), r.Percent, r.Pages, r.Max, r.Runs)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "\tfreeze\tdump\n")
	fmt.Fprintf(tw, "increment, no budget\t%v\t%v\n", r.Freeze.Round(time.Microsecond), r.Dump.Round(time.Microsecond))
	fmt.Fprintf(tw, "increment, --max-freeze %v\t%v\t%v\n", r.Max, r.BudgetFreeze.Round(time.Microsecond), r.BudgetDump.Round(time.Microsecond))
	tw.Flush()
	fmt.Fprintf(w, "pre-copy: %d rounds, %d pages while running, %d in the freeze (last run)\n", r.Rounds, r.PreCopied, r.Frozen)
	if r.BudgetFreeze > 0 {
		fmt.Fprintf(w, "freeze ratio with/without budget: 1/%.1f\n", float64(r.Freeze)/float64(r.BudgetFreeze))
	}
}
