package kafkax

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// TopicSpec is how one of Takt's topics is laid out on a Kafka cluster.
type TopicSpec struct {
	Name       string
	Partitions int32
	// ReplicationFactor is the copies of each partition; with acks=all a
	// record is acknowledged once MinInSyncReplicas of them have it.
	ReplicationFactor int16
	MinInSyncReplicas int
}

// Production defaults (README, "Kafka in production"): three copies of
// every record, two of them written before the ingestor answers 200, so
// one broker can be down without stopping ingest or losing a record.
const (
	DefaultReplicationFactor = 3
	DefaultMinInSyncReplicas = 2
	DefaultPartsPartitions   = 24
	DefaultDLQPartitions     = 3
)

// ProductionTopics returns the parts topic and its dead-letter topic with
// the production defaults and the parts topic's partition count.
func ProductionTopics(parts, dlq string, partitions int32) []TopicSpec {
	return []TopicSpec{
		{Name: parts, Partitions: partitions, ReplicationFactor: DefaultReplicationFactor, MinInSyncReplicas: DefaultMinInSyncReplicas},
		{Name: dlq, Partitions: DefaultDLQPartitions, ReplicationFactor: DefaultReplicationFactor, MinInSyncReplicas: DefaultMinInSyncReplicas},
	}
}

// EnsureTopics creates the topics of specs that do not exist and checks the
// ones that do: fewer partitions, fewer replicas or a lower
// min.insync.replicas than the spec is an error (every such problem is
// listed). It never changes an existing topic: adding partitions moves
// locations to other partitions, which needs the pipeline drained first.
// It returns the names it created.
func EnsureTopics(ctx context.Context, adm *kadm.Client, specs []TopicSpec) ([]string, error) {
	var created []string
	var problems []error
	for _, sp := range specs {
		if sp.Partitions < 1 || sp.ReplicationFactor < 1 || sp.MinInSyncReplicas < 1 || sp.MinInSyncReplicas > int(sp.ReplicationFactor) {
			problems = append(problems, fmt.Errorf("topic %s: %d partitions, replication factor %d, min.insync.replicas %d: each at least 1, min.insync.replicas at most the replication factor",
				sp.Name, sp.Partitions, sp.ReplicationFactor, sp.MinInSyncReplicas))
			continue
		}
		minISR := strconv.Itoa(sp.MinInSyncReplicas)
		resp, err := adm.CreateTopic(ctx, sp.Partitions, sp.ReplicationFactor, map[string]*string{"min.insync.replicas": &minISR}, sp.Name)
		if err == nil {
			err = resp.Err
		}
		switch {
		case err == nil:
			created = append(created, sp.Name)
			continue
		case !errors.Is(err, kerr.TopicAlreadyExists):
			problems = append(problems, fmt.Errorf("create topic %s: %w", sp.Name, err))
			continue
		}
		if err := checkTopic(ctx, adm, sp); err != nil {
			problems = append(problems, err)
		}
	}
	return created, errors.Join(problems...)
}

// checkTopic compares an existing topic with its spec.
func checkTopic(ctx context.Context, adm *kadm.Client, sp TopicSpec) error {
	details, err := adm.ListTopics(ctx, sp.Name)
	if err != nil {
		return fmt.Errorf("describe topic %s: %w", sp.Name, err)
	}
	td, ok := details[sp.Name]
	if !ok || td.Err != nil {
		return fmt.Errorf("describe topic %s: %v", sp.Name, td.Err)
	}
	var problems []error
	if n := int32(len(td.Partitions)); n < sp.Partitions {
		problems = append(problems, fmt.Errorf("topic %s has %d partitions, want at least %d (adding them moves locations to other partitions: drain the pipeline first)", sp.Name, n, sp.Partitions))
	}
	if rf := td.Partitions.NumReplicas(); rf < int(sp.ReplicationFactor) {
		problems = append(problems, fmt.Errorf("topic %s has replication factor %d, want at least %d", sp.Name, rf, sp.ReplicationFactor))
	}
	rcs, err := adm.DescribeTopicConfigs(ctx, sp.Name)
	if err != nil {
		return fmt.Errorf("describe configs of topic %s: %w", sp.Name, err)
	}
	rc, err := rcs.On(sp.Name, nil)
	if err != nil || rc.Err != nil {
		return fmt.Errorf("describe configs of topic %s: %v %v", sp.Name, err, rc.Err)
	}
	for _, c := range rc.Configs {
		if c.Key != "min.insync.replicas" {
			continue
		}
		if v, err := strconv.Atoi(c.MaybeValue()); err != nil || v < sp.MinInSyncReplicas {
			problems = append(problems, fmt.Errorf("topic %s has min.insync.replicas %s, want at least %d", sp.Name, c.MaybeValue(), sp.MinInSyncReplicas))
		}
	}
	return errors.Join(problems...)
}
