package rtcr

import (
	"io"
	"time"
)

// RunActionForTest runs an action script as rtcr migrate and rtcr serve
// do, bounded by timeout instead of ActionTimeout.
func RunActionForTest(script, action string, env []string, out io.Writer, timeout time.Duration) error {
	old := actionTimeout
	actionTimeout = timeout
	defer func() { actionTimeout = old }()
	return runAction(script, action, env, out)
}
