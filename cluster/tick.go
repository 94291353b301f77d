package cluster

import (
	"context"
	"time"
)

// tick calls f every interval until ctx ends (the first call at once when now is set), or
// until f returns false. Each call gets a context that ends after bound: a Redis that does not
// answer must not hold the loop past its next beat or look.
func tick(ctx context.Context, interval, bound time.Duration, now bool, f func(ctx context.Context) bool) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for first := true; ; first = false {
		if !first || !now {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
		fctx, cancel := context.WithTimeout(ctx, bound)
		more := f(fctx)
		cancel()
		if !more {
			return
		}
	}
}
