package rtcr

// SetDumpStageHookForTest makes Dump call f with the image directory once
// it has opened and locked it, before it writes anything (nil: no hook).
func SetDumpStageHookForTest(f func(dir string)) { dumpStageHook = f }
