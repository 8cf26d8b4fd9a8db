// Package replicated holds the test of Takt on a replicated ClickHouse
// (make test-cluster): it starts a local stack of its own in cluster mode
// (compose/local/stack.sh with TAKT_STACK_CLUSTER=1: ZooKeeper, two
// ClickHouse 18.16 replicas of one shard, two ingestors, three processors in
// one consumer group), drives it with the load harness at a steady rate over
// both ingestors, and meanwhile SIGKILLs the replica the services write to
// and brings it back, SIGKILLs a processor and brings it back, and restarts
// ZooKeeper. Then every acknowledged part must be stored exactly once, and
// both replicas must hold the same rows, in parts and in every rollup.
//
// The stack runs under a temporary directory on ports moved by
// TAKT_STACK_PORT_OFFSET (default here 4000), so a running local stack is
// left alone; the test signals only the processes whose pid files its own
// stack wrote, and stops that stack at the end. The build tag takt_cluster
// keeps it out of go test ./...: it loads the machine for minutes.
package replicated
