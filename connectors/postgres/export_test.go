package postgres

// HeartbeatSQL lets tests write a heartbeat as the reader does.
const HeartbeatSQL = heartbeatSQL
