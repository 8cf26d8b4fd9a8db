// Command bare is the ceiling of the ingest benchmark: gin binding the part
// JSON and answering {"message":"Part processed successfully"}, with no
// authentication, no validation and no Kafka. Listens on TAKT_BARE_ADDR
// (default 127.0.0.1:18090).
package main

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/takt/takt/internal/config"
)

type part struct {
	ExternalID string  `json:"external_id"`
	Quantity   int     `json:"quantity"`
	Quality    string  `json:"quality"`
	Product    string  `json:"product"`
	CycleTime  float64 `json:"cycle_time"`
	RecordedAt any     `json:"recorded_at"`
	Reason     string  `json:"reason"`
}

func main() {
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	var env config.Env
	addr := env.String("BARE_ADDR", "127.0.0.1:18090")
	if err := env.Err(); err != nil {
		logger.Error("config", "err", err)
		os.Exit(1)
	}
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.POST("/api/external/production/process_part", func(c *gin.Context) {
		var body struct {
			Part part `json:"part"`
		}
		if err := c.ShouldBindJSON(&body); err != nil {
			c.JSON(http.StatusUnprocessableEntity, gin.H{"error": "Invalid message format"})
			return
		}
		c.JSON(http.StatusOK, gin.H{"message": "Part processed successfully"})
	})
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	srv := &http.Server{Addr: addr, Handler: r, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shut)
	}()
	logger.Info("bare gin listening", "addr", addr)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		logger.Error("serve", "err", err)
		os.Exit(1)
	}
}
