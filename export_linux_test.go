package rtcr

// SetDumpStageHookForTest makes Dump call f with the image directory once
// it has opened and locked it, before it writes anything (nil: no hook).
func SetDumpStageHookForTest(f func(dir string)) { dumpStageHook = f }

// SetDrainFrozenHookForTest makes a dump that drains listeners call f
// after each freeze (try counts them from 1), before it looks at the
// accept queues, with the drain table's name (nil: no hook).
func SetDrainFrozenHookForTest(f func(try int, table string)) { drainFrozenHook = f }
