// Package memory is the in-process bus of the embedded mode (freshet up):
// the ingest pipeline publishes batches, materializers in the same process
// subscribe to them. It implements ingest.Bus.
//
// "Durable" here means accepted into the process's memory: a crash loses
// what consumers had not applied, and the source resends it from its slot,
// which was never acknowledged past what the bus accepted.
package memory
