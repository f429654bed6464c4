package procstat

import (
	"os"
	"testing"
	"time"
)

func TestCPUGrowsWithWork(t *testing.T) {
	before, err := CPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	x := 0
	for start := time.Now(); time.Since(start) < 50*time.Millisecond; {
		x++
	}
	after, err := CPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if after-before < 10*time.Millisecond {
		t.Errorf("50 ms of spinning counted as %v of CPU", after-before)
	}
	if _, err := CPU(-1); err == nil {
		t.Error("no error for a process that does not exist")
	}
	_ = x
}
