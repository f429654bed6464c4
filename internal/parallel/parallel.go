// Package parallel spreads independent work over the cores: parsing and
// verifying events, each a canonical encoding and a hash or a signature
// check that does not depend on the others.
//
// It imports only the standard library.
package parallel

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// For runs f(0) … f(n-1), each index once, on every core, and returns
// when all are done.
func For(n int, f func(i int)) {
	workers := min(runtime.GOMAXPROCS(0), n)
	if workers < 2 {
		for i := range n {
			f(i)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				f(i)
			}
		}()
	}
	wg.Wait()
}
