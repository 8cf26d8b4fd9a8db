package kafkax_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/takt/takt/internal/kafkax"
)

// TestEnsureTopics on an in-process three-broker cluster: the production
// layout is created, a second run changes nothing, and a topic laid out
// below the spec is reported, every problem at once, never altered.
func TestEnsureTopics(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(3))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	specs := kafkax.ProductionTopics("parts", "parts.dlq", 12)
	created, err := kafkax.EnsureTopics(ctx, adm, specs)
	if err != nil || !slices.Equal(created, []string{"parts", "parts.dlq"}) {
		t.Fatalf("first run: created %v, %v", created, err)
	}
	details, err := adm.ListTopics(ctx, "parts", "parts.dlq")
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]int{"parts": 12, "parts.dlq": kafkax.DefaultDLQPartitions} {
		td := details[name]
		if len(td.Partitions) != want || td.Partitions.NumReplicas() != kafkax.DefaultReplicationFactor {
			t.Errorf("%s: %d partitions, %d replicas; want %d, %d", name, len(td.Partitions), td.Partitions.NumReplicas(), want, kafkax.DefaultReplicationFactor)
		}
	}
	rcs, err := adm.DescribeTopicConfigs(ctx, "parts")
	if err != nil {
		t.Fatal(err)
	}
	rc, _ := rcs.On("parts", nil)
	found := false
	for _, cfg := range rc.Configs {
		if cfg.Key == "min.insync.replicas" {
			found = cfg.MaybeValue() == "2"
		}
	}
	if !found {
		t.Errorf("parts: min.insync.replicas is not 2: %+v", rc.Configs)
	}

	if created, err := kafkax.EnsureTopics(ctx, adm, specs); err != nil || len(created) != 0 {
		t.Fatalf("second run: created %v, %v; want nothing, no error", created, err)
	}

	if _, err := adm.CreateTopic(ctx, 2, 1, nil, "thin"); err != nil {
		t.Fatal(err)
	}
	_, err = kafkax.EnsureTopics(ctx, adm, kafkax.ProductionTopics("thin", "parts.dlq", 12))
	if err == nil || !strings.Contains(err.Error(), "replication factor 1") || !strings.Contains(err.Error(), "2 partitions") ||
		!strings.Contains(err.Error(), "min.insync.replicas 1") {
		t.Fatalf("topic below the spec: %v; want its partitions, replication factor and min.insync.replicas reported", err)
	}
	if details, _ := adm.ListTopics(ctx, "thin"); len(details["thin"].Partitions) != 2 {
		t.Error("an existing topic was altered")
	}

	bad := []kafkax.TopicSpec{{Name: "x", Partitions: 1, ReplicationFactor: 3, MinInSyncReplicas: 4}}
	if created, err := kafkax.EnsureTopics(ctx, adm, bad); err == nil || len(created) != 0 {
		t.Fatalf("min.insync.replicas above the replication factor: created %v, %v", created, err)
	}
}
