package processor

import (
	"context"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/takt/takt/internal/redisx"
)

// Master-data changes: the record API publishes the name of a changed
// master-data table on redisx.Keys.MasterDataChanges. The processor listens
// and reloads its master data (products, reasons, and the locations' stop
// thresholds and shifts) at once instead of at the next periodic refresh.
// Redis is optional: without it, or while it is down, the periodic refresh
// (TAKT_CATALOG_REFRESH) alone keeps the master data current.

// masterDataTables are the tables whose changes reload the master data.
var masterDataTables = map[string]bool{
	"products": true, "reasons": true, "lines": true, "machines": true, "shifts": true, "sites": true,
}

// reloadDebounce gathers a burst of announcements into one reload.
const reloadDebounce = 50 * time.Millisecond

// listenForChanges reloads md whenever one of its tables is announced
// changed, and once after every (re)subscription, for announcements missed
// while the subscription was down. It returns when ctx is done.
func listenForChanges(ctx context.Context, rdb *redis.Client, channel string, md *masterData, logger *slog.Logger) {
	want := make(chan struct{}, 1)
	request := func() {
		select {
		case want <- struct{}{}:
		default:
		}
	}
	// The reloads end with the subscription.
	done := make(chan struct{})
	defer func() { <-done }()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		defer close(done)
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
			if err := md.reload(ctx); err != nil && ctx.Err() == nil {
				logger.Warn("master-data reload after a change announcement failed; the periodic refresh retries", "err", err)
			}
		}
	}()
	redisx.Listen(ctx, rdb, channel, redisx.Listener{
		Subscribed: func(bool) { request() },
		Message: func(table string) {
			if masterDataTables[table] {
				request()
			}
		},
		Down: func(err error) {
			logger.Warn("master-data change announcements unavailable; the master data refreshes periodically meanwhile", "err", err)
		},
	})
}
