// Package loadtest is Takt's load harness: it drives the ingest API the way
// fleets of machines do and reports what the pipeline did with the load.
//
// For now it holds the reference point of the ingest benchmark,
// cmd/bare: a gin server that binds the same JSON the ingestor accepts and
// answers 200 with the same body, doing nothing else. Takt's ingest rate is
// reported next to this ceiling, measured in the same run on the same
// machine.
package loadtest
