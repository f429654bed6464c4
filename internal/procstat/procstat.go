// Package procstat reads what a process used from Linux's /proc, for the
// project's benchmark commands.
package procstat

import (
	"os"
	"strconv"
	"strings"
	"time"
)

// CPU is the CPU time a process (all its threads) used so far, to the
// nanosecond from each thread's schedstat (a single request costs a few
// milliseconds, less than /proc/<pid>/stat's 10 ms ticks); threads that
// ended are not counted, which Go's runtime rarely does.
func CPU(pid int) (time.Duration, error) {
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var sum time.Duration
	for _, t := range tasks {
		data, err := os.ReadFile(dir + "/" + t.Name() + "/schedstat")
		if err != nil {
			continue // the thread ended
		}
		if f := strings.Fields(string(data)); len(f) > 0 {
			ns, _ := strconv.ParseInt(f[0], 10, 64)
			sum += time.Duration(ns)
		}
	}
	return sum, nil
}
