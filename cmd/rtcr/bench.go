package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/rtcr/rtcr/internal/bench"
)

func runBench(args []string) error {
	fs := newFlags("bench", "[--size 1G] [--runs 3] [--dir /dev/shm] [--threads 64] [--procs 32] [--fds 10000] [--criu PATH] | --incremental PCT [--max-freeze 5ms] [--size 1G] [--runs 3] [--dir /dev/shm] | --periodic 100ms [--size 256M] [--window 3s] [--keep 5] [--runs 3] [--dir /dev/shm]")
	size := fs.String("size", "1G", "resident memory of the benchmarked process (K, M, G suffixes)")
	runs := fs.Int("runs", 3, "measure this many times and report the best")
	dir := fs.String("dir", "/dev/shm", "where images are written (a tmpfs measures rtcr, not the disk)")
	threads := fs.Int("threads", 64, "threads of the many-threads benchmark (0: skip it and the tree)")
	procs := fs.Int("procs", 32, "processes of the process-tree benchmark")
	nfds := fs.Int("fds", 10000, "fds of the many-fds benchmark, against 10 (0: skip it)")
	criu := fs.String("criu", "", "a CRIU binary: dump and restore the thread and tree shapes with it too, and print rtcr/CRIU")
	incr := fs.Float64("incremental", 0, "instead: freeze of an incremental checkpoint after `PCT` % of the pages were written, against a full one")
	maxFreeze := fs.Duration("max-freeze", 0, "with --incremental: instead, the freeze of an increment with this budget (pre-copy) against one without, as many pages written")
	periodic := fs.Duration("periodic", 0, "instead: a memory-writing process's work with a checkpoint every `INTERVAL` (rtcr run --every) against without, same process, same run")
	window := fs.Duration("window", 3*time.Second, "with --periodic: how long each measurement lasts")
	keep := fs.Int("keep", 5, "with --periodic: checkpoints the series keeps (rtcr run --keep)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *periodic != 0 {
		given := false
		fs.Visit(func(f *flag.Flag) { given = given || f.Name == "size" })
		if !given {
			*size = "256M"
		}
	}
	n, err := parseSize(*size)
	if err != nil {
		return usagef("--size: %v", err)
	}
	if *runs < 1 {
		return usagef("--runs must be at least 1")
	}
	if (*threads != 0 && *threads < 2) || *threads > 255 || *procs < 2 || *procs > 255 {
		return usagef("--threads must be 0 or 2-255 and --procs 2-255")
	}
	if *nfds != 0 && (*nfds <= 10 || *nfds > 1<<20) {
		return usagef("--fds must be 0 or 11-1048576")
	}
	if *periodic != 0 {
		if *periodic < 0 || *window <= 0 || *keep < 0 {
			return usagef("--periodic and --window must be above 0, --keep 0 or more")
		}
		res, err := bench.RunPeriodic(bench.PeriodicOptions{Dir: *dir, Size: n, Interval: *periodic, Window: *window, Runs: *runs, Keep: *keep})
		if err != nil {
			return err
		}
		res.Print(os.Stdout)
		return nil
	}
	if *incr != 0 {
		if *incr < 0 || *incr > 100 {
			return usagef("--incremental must be a percentage above 0, at most 100")
		}
		if *maxFreeze < 0 {
			return usagef("--max-freeze must be > 0")
		}
		if *maxFreeze > 0 {
			res, err := bench.RunBudget(*dir, n, *incr, *runs, *maxFreeze)
			if err != nil {
				return err
			}
			res.Print(os.Stdout)
			return nil
		}
		res, err := bench.RunIncremental(*dir, n, *incr, *runs)
		if err != nil {
			return err
		}
		res.Print(os.Stdout)
		return nil
	}
	if *criu != "" {
		if *threads == 0 {
			return usagef("--criu compares the thread and tree shapes: --threads must not be 0")
		}
		if err := bench.CheckCRIU(*criu); err != nil {
			return usagef("--criu %s: %v", *criu, err)
		}
	}
	res, err := bench.Run(bench.Options{Size: n, Runs: *runs, Dir: *dir})
	if err != nil {
		return err
	}
	res.Print(os.Stdout)
	if *threads > 0 {
		shapes, err := bench.RunShapes(*dir, *threads, *procs, *runs, *criu)
		if err != nil {
			return err
		}
		fmt.Println()
		bench.PrintShapes(os.Stdout, shapes)
		if *criu != "" {
			fmt.Println()
			bench.PrintCRIU(os.Stdout, shapes)
		}
	}
	if *nfds > 0 {
		counts := []int{10, 12} // 12: one whole cycle of the mix
		if *nfds > 1000 {
			counts = append(counts, 1000)
		}
		res, err := bench.RunFDs(*dir, append(counts, *nfds), *runs, 10**runs)
		if err != nil {
			return err
		}
		fmt.Println()
		bench.PrintFDs(os.Stdout, res)
	}
	return nil
}

// parseSize parses a byte count with an optional K/M/G suffix (powers of
// 1024), rounded down to whole pages.
func parseSize(s string) (uint64, error) {
	mult := uint64(1)
	switch {
	case strings.HasSuffix(s, "K"):
		mult, s = 1<<10, strings.TrimSuffix(s, "K")
	case strings.HasSuffix(s, "M"):
		mult, s = 1<<20, strings.TrimSuffix(s, "M")
	case strings.HasSuffix(s, "G"):
		mult, s = 1<<30, strings.TrimSuffix(s, "G")
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil || v == 0 || v > (1<<46)/mult {
		return 0, strconv.ErrSyntax
	}
	n := v * mult &^ 4095
	if n == 0 {
		return 0, strconv.ErrRange
	}
	return n, nil
}
