package rtcr

// SetDumpStageHookForTest makes Dump call f with the image directory once
// it has opened and locked it, before it writes anything (nil: no hook).
func SetDumpStageHookForTest(f func(dir string)) { dumpStageHook = f }

// SetDrainFrozenHookForTest makes a dump that drains listeners call f
// after each freeze (try counts them from 1), before it looks at the
// accept queues, with the drain table's name (nil: no hook).
func SetDrainFrozenHookForTest(f func(try int, table string)) { drainFrozenHook = f }

// SetPreFreezeHookForTest makes an incremental Dump call f with the
// tree's root after it read its smaps before the freeze, before it
// freezes the tree (nil: no hook).
func SetPreFreezeHookForTest(f func(pid int)) { preFreezeHook = f }

// SetDumpMemoryHookForTest makes Dump call f after the memory of each
// process was copied; an error fails the dump there (nil: no hook).
func SetDumpMemoryHookForTest(f func(pid int) error) { dumpMemoryHook = f }

// CloseLazyFdsForTest closes rtcr's copies of the userfaultfds of the
// lazy restore l (as a killed rtcr's exit does), serving nothing more.
func CloseLazyFdsForTest(l *LazyRestore) { l.srv.CloseFaultFds() }
