package procstat

import (
	"os"
	"syscall"
	"testing"
	"time"
)

func TestCPUGrowsWithWork(t *testing.T) {
	before, err := CPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Spin until the kernel's own account (getrusage) shows 30 ms of CPU:
	// on a loaded machine 30 ms of wall time may hold far less.
	r0 := rusageCPU(t)
	x := 0
	for rusageCPU(t)-r0 < 30*time.Millisecond {
		x++
	}
	after, err := CPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if after-before < 25*time.Millisecond {
		t.Errorf("30 ms of CPU by getrusage counted as %v", after-before)
	}
	if _, err := CPU(-1); err == nil {
		t.Error("no error for a process that does not exist")
	}
	_ = x
}

func rusageCPU(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
