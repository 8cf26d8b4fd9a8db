// Command taktctl administers a Takt database: it applies the ClickHouse
// migrations and seeds the demo data of the local stack.
//
//	taktctl migrate                 apply pending migrations
//	taktctl seed [-key K] [-secret S]
//	                                migrate, write the demo records, print
//	                                API_KEY, SECRET_KEY and SECRET_SERVER as
//	                                shell assignments (K and S are kept when
//	                                ClickHouse still knows them)
//	taktctl bootstrap [-user U] [-timezone TZ] [-server S]
//	                                migrate, then on a database without users
//	                                write the first admin user, an API key
//	                                with every scope and a secret key; print
//	                                them as in seed (the key is shown only
//	                                here)
//	taktctl tls -dir D [-hosts H,...]
//	                                make sure D holds a local certificate
//	                                authority (ca.pem, kept) and a server
//	                                certificate it signed for the hosts
//	                                (server.pem, server-key.pem; renewed 30
//	                                days before its end); print CA_FILE,
//	                                TLS_CERT and TLS_KEY as shell assignments
//	taktctl topics [-partitions N] [-replication-factor R] [-min-insync M]
//	                                create the parts topic and its dead-letter
//	                                topic on a Kafka cluster with the
//	                                production layout (24 partitions,
//	                                replication factor 3, min.insync.replicas
//	                                2), or check existing ones against it
//
// ClickHouse is found through TAKT_CLICKHOUSE_* and Kafka through
// TAKT_KAFKA_*, TAKT_PARTS_TOPIC and TAKT_DLQ_TOPIC like every Takt binary.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/takt/takt/internal/bootstrap"
	"github.com/takt/takt/internal/chstore"
	"github.com/takt/takt/internal/config"
	"github.com/takt/takt/internal/demo"
	"github.com/takt/takt/internal/kafkax"
	"github.com/takt/takt/internal/tlsx"
)

func main() {
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(os.Args[1:], logger); err != nil {
		fmt.Fprintln(os.Stderr, "taktctl:", err)
		os.Exit(1)
	}
}

func run(args []string, logger *slog.Logger) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: taktctl migrate | seed [-key K] [-secret S] | bootstrap [-user U] [-timezone TZ] [-server S] | tls -dir D [-hosts H,...] | topics [-partitions N] [-replication-factor R] [-min-insync M]")
	}
	if args[0] == "tls" {
		return localTLS(args[1:])
	}
	if args[0] == "topics" {
		return topics(args[1:], logger)
	}
	var env config.Env
	cfg := chstore.ConfigFromEnv(&env)
	if err := env.Err(); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()

	// Every command migrates first; seed and bootstrap then write records
	// and print the credentials they hand out.
	var write func(context.Context, *chstore.Store) (bootstrap.Credentials, error)
	switch args[0] {
	case "migrate":
	case "seed":
		fs := flag.NewFlagSet("seed", flag.ContinueOnError)
		key := fs.String("key", "", "API key to keep if it is still known")
		secret := fs.String("secret", "", "secret key to keep if it is still known")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		write = func(ctx context.Context, s *chstore.Store) (bootstrap.Credentials, error) {
			return demo.Seed(ctx, s, *key, *secret)
		}
	case "bootstrap":
		fs := flag.NewFlagSet("bootstrap", flag.ContinueOnError)
		user := fs.String("user", "admin", "username of the first admin user")
		tz := fs.String("timezone", "UTC", "time zone of site 1 when the database has no site")
		server := fs.String("server", "takt", "server name of the secret key for signed calls")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		write = func(ctx context.Context, s *chstore.Store) (bootstrap.Credentials, error) {
			return bootstrap.FirstAdmin(ctx, s, *user, *tz, *server)
		}
	default:
		return fmt.Errorf("unknown command %q: want migrate, seed or bootstrap", args[0])
	}
	s, err := chstore.Open(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer s.Close()
	if err := s.Migrate(ctx); err != nil || write == nil {
		return err
	}
	out, err := write(ctx, s)
	if err != nil {
		return err
	}
	fmt.Printf("API_KEY=%s\nSECRET_KEY=%s\nSECRET_SERVER=%s\n", out.APIKey, out.SecretKey, out.SecretServer)
	return nil
}

// localTLS is `taktctl tls`: the local stack's certificates, needing no
// ClickHouse.
func localTLS(args []string) error {
	fs := flag.NewFlagSet("tls", flag.ContinueOnError)
	dir := fs.String("dir", "", "directory of the CA and the server certificate")
	hosts := fs.String("hosts", "127.0.0.1,::1,localhost", "comma-separated DNS names and IP addresses the server certificate covers")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" {
		return fmt.Errorf("tls: -dir is required")
	}
	var hs []string
	for _, h := range strings.Split(*hosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			hs = append(hs, h)
		}
	}
	f, wrote, err := tlsx.LocalCA(*dir, hs, time.Now())
	if err != nil {
		return err
	}
	if wrote {
		fmt.Fprintf(os.Stderr, "taktctl: wrote a server certificate for %s, signed by %s\n", strings.Join(hs, ", "), f.CA)
	}
	fmt.Printf("CA_FILE=%s\nTLS_CERT=%s\nTLS_KEY=%s\n", f.CA, f.Cert, f.Key)
	return nil
}

// topics is `taktctl topics`: the production layout of Takt's topics.
func topics(args []string, logger *slog.Logger) error {
	fs := flag.NewFlagSet("topics", flag.ContinueOnError)
	partitions := fs.Int("partitions", kafkax.DefaultPartsPartitions, "partitions of the parts topic (the processors that can work in parallel; README, \"Kafka in production\")")
	rf := fs.Int("replication-factor", kafkax.DefaultReplicationFactor, "copies of every partition")
	minISR := fs.Int("min-insync", kafkax.DefaultMinInSyncReplicas, "min.insync.replicas: copies written before a record is acknowledged")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *partitions < 1 || *partitions > 10000 || *rf < 1 || *rf > 32 {
		return fmt.Errorf("topics: -partitions %d (1..10000), -replication-factor %d (1..32)", *partitions, *rf)
	}
	var env config.Env
	brokers := env.List("KAFKA_BROKERS", []string{"127.0.0.1:19092"})
	parts, dlq := env.String("PARTS_TOPIC", "takt.parts"), env.String("DLQ_TOPIC", "takt.parts.dlq")
	sec := kafkax.SecurityFromEnv(&env)
	if err := env.Err(); err != nil {
		return err
	}
	if err := sec.Validate(); err != nil {
		return err
	}
	cl, err := kafkax.NewClient(kafkax.Config{Brokers: brokers, Security: sec}, logger)
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	specs := kafkax.ProductionTopics(parts, dlq, int32(*partitions))
	for i := range specs {
		specs[i].ReplicationFactor, specs[i].MinInSyncReplicas = int16(*rf), *minISR
	}
	created, err := kafkax.EnsureTopics(ctx, kadm.NewClient(cl), specs)
	for _, name := range created {
		fmt.Fprintf(os.Stderr, "taktctl: created topic %s\n", name)
	}
	return err
}
