package chcompat

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// HTTP is a ClickHouse server reached over its HTTP interface (the
// reference server: 18.16 speaks it like every later release).
type HTTP struct {
	// URL is the server's HTTP address, e.g. http://127.0.0.1:18123.
	URL      string
	Database string
	Client   *http.Client
}

// Exec implements Engine.
func (h *HTTP) Exec(ctx context.Context, sql string, settings map[string]any) error {
	_, err := h.Query(ctx, sql, settings)
	return err
}

// Query implements Engine.
func (h *HTTP) Query(ctx context.Context, sql string, settings map[string]any) (string, error) {
	v := url.Values{}
	if h.Database != "" {
		v.Set("database", h.Database)
	}
	for k, s := range settings {
		v.Set(k, fmt.Sprint(s))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(h.URL, "/")+"/?"+v.Encode(), strings.NewReader(sql))
	if err != nil {
		return "", err
	}
	cl := h.Client
	if cl == nil {
		cl = http.DefaultClient
	}
	resp, err := cl.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return string(body), nil
}

// Settle waits until the database's mutations are done: the server
// applies ALTER ... UPDATE and DELETE in the background.
func (h *HTTP) Settle(ctx context.Context) error {
	for {
		n, err := h.Query(ctx, "SELECT count() FROM system.mutations WHERE database = currentDatabase() AND is_done = 0", nil)
		if err != nil {
			return err
		}
		if strings.TrimSpace(n) == "0" {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
