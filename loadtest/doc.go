// Package loadtest is Takt's load harness: it drives the ingest API the way
// fleets of machines do and reports what the pipeline did with the load.
//
// Run simulates Config.Machines machines (locations lt_m0001.. with
// products LT-P01.., provisioned once in a dedicated id range, see
// provision.go) making parts with realistic cycle times, scrap and rework
// rates, multi-cavity quantities and stops, and sends them to the single
// (process_part) or batch (process_parts) endpoint:
//
//   - open loop (Config.Rate): sends are due at fixed intervals whatever
//     the answers; latency counts from the due time, so a slow server
//     cannot hide behind a slow sender (no coordinated omission); a send
//     due while Config.InFlight requests are outstanding is dropped and
//     counted;
//   - closed loop (Config.Concurrency): that many senders back to back,
//     for the saturation rate.
//
// Latencies go to an HdrHistogram. With Config.Verify the run waits for
// the pipeline to drain and checks by counting that every acknowledged
// part is in ClickHouse exactly once (see verify), and samples the time
// from a part's acknowledgement to its visibility in the query API.
//
// Every run is bounded in time and parts (hard caps below) and refuses
// non-loopback targets. cmd/loadtest is the command, cmd/bench the `make
// bench` figures, and cmd/bare the ceiling of the ingest benchmark: a gin
// server that binds the same JSON and answers the same body, doing nothing
// else.
package loadtest
