package processor

import (
	"context"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"
)

// Master-data changes: the record API publishes the name of a changed
// master-data table on <prefix>invalidate. The processor listens and
// reloads its catalog (products, reasons, and the locations' stop
// thresholds and shifts) at once instead of at the next periodic refresh.
// Redis is optional: without it, or while it is down, the periodic refresh
// (TAKT_CATALOG_REFRESH) alone keeps the catalog current.

// catalogTables are the tables whose changes reload the catalog.
var catalogTables = map[string]bool{
	"products": true, "reasons": true, "lines": true, "machines": true, "shifts": true, "sites": true,
}

// reloadDebounce gathers a burst of announcements into one reload.
const reloadDebounce = 50 * time.Millisecond

// listenForChanges reloads cat whenever a catalog table is announced
// changed, and once after every (re)subscription, for announcements missed
// while the subscription was down. It returns when ctx is done.
func listenForChanges(ctx context.Context, rdb *redis.Client, channel string, cat *catalog, logger *slog.Logger) error {
	sub := rdb.Subscribe(ctx, channel)
	defer sub.Close()
	// Receive does not end with ctx; closing the subscription does.
	stop := context.AfterFunc(ctx, func() { sub.Close() })
	defer stop()
	want := make(chan struct{}, 1)
	request := func() {
		select {
		case want <- struct{}{}:
		default:
		}
	}
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-want:
			}
			if !sleep(ctx, reloadDebounce) {
				return
			}
			select { // what arrived during the pause is in this reload
			case <-want:
			default:
			}
			if err := cat.reload(ctx); err != nil && ctx.Err() == nil {
				logger.Warn("catalog reload after a master-data change failed; the periodic refresh retries", "err", err)
			}
		}
	}()
	down := false
	for {
		msg, err := sub.Receive(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			// go-redis resubscribes on the next Receive; wait a moment
			// rather than spin while Redis is down.
			if !down {
				logger.Warn("master-data change announcements unavailable; the catalog refreshes periodically meanwhile", "err", err)
				down = true
			}
			sleep(ctx, time.Second)
			continue
		}
		down = false
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				request()
			}
		case *redis.Message:
			if catalogTables[m.Payload] {
				request()
			}
		}
	}
}
