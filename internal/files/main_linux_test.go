package files_test

import (
	"os"
	"testing"

	"github.com/rtcr/rtcr/internal/testutil"
)

// TestMain keeps inherited fds out of the test targets (see testutil.Main).
func TestMain(m *testing.M) { os.Exit(testutil.Main(m)) }
