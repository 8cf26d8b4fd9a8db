// Package chaos is Takt's fault matrix, counted to the part: it starts a
// whole Takt deployment of its own (ClickHouse, Redis and the
// Kafka-protocol broker as processes on free loopback ports with data
// directories of their own, the ingestor, processor and query API as
// processes), drives it with the load harness at a steady rate, injects
// one fault at a time, heals it, waits for the pipeline to drain and
// compares what ClickHouse and the parts record area hold with what the
// ingestor answered, part by part:
//
//   - every part answered 200 is stored exactly once (lost, doubled);
//   - a part answered 4xx is not stored; a part without a definite answer
//     (5xx, no answer) is stored at most once (counted as "unacked
//     stored");
//   - nothing is stored that was not sent;
//   - parts_hourly equals the rollup of parts, and parts_hour_ranges
//     covers every stored row.
//
// A part is identified by its location and its recorded_at in
// milliseconds, which the load harness keeps unique per machine
// (loadtest.PartOutcome).
//
// Faults (Faults lists them): ClickHouse SIGKILLed while an INSERT into
// parts runs and restarted, paused (SIGSTOP/SIGCONT), and answering slowly
// (Proxy, an in-process TCP proxy in front of it that delays its answers);
// the broker SIGKILLed and restarted on its data directory, and paused;
// the processor SIGKILLed between an insert and its commit (the
// takt_failpoints build); a second processor joining and leaving; Redis
// SIGKILLed, paused (CLIENT PAUSE) and flushed (FLUSHALL), with checks that
// API keys, record ids and rate limits come back; the ingestor SIGKILLed
// with requests in flight.
//
// The harness never signals a process it did not start: the shared local
// stack is left alone. Every wait is bounded in time, every loop in count,
// and the load is loopback only. cmd/chaos (`make chaos`) runs the full
// matrix and writes bench/chaos.md; the Go test (build tag takt_chaos)
// runs a short one.
package chaos
