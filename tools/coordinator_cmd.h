#pragma once
// `cohort coordinator`, `cohort status` and `cohort kv`: one Raft node of the
// coordinator, and the client commands against a running cluster
// (coordinator/server, coordinator/client). Each returns the process exit
// code: 0 on success, 1 on an error (printed as one line on stderr), 2 for a
// bad command line.

#include <cstdint>
#include <string>

namespace cohort::tools {

struct CoordinatorCmdOptions {
  uint64_t id = 0;
  std::string peers;  // "1=HOST:PORT,2=HOST:PORT,..."
  std::string data_dir;
  std::string token_file;
  std::string listen;  // bind address; empty: this node's entry in peers
  int tick_ms = 10;
  int heartbeat_ms = 50;
  int election_ms = 300;
  uint64_t snapshot_every = 10000;
  std::string log_level = "info";
  std::string tls_cert, tls_key, tls_ca;  // PEM files: all three for TLS, none for plaintext
  int metrics_port = -1;                  // Prometheus endpoint: -1 off, 0 any free port
  std::string metrics_address;            // its bind address (empty: 0.0.0.0)
};
// Runs until SIGINT/SIGTERM (exit 0) or a fatal storage error (exit 1).
int RunCoordinator(const CoordinatorCmdOptions& opt);

struct ClientCmdOptions {
  std::string coordinator;  // "HOST:PORT,HOST:PORT,..."
  std::string token_file;
  int timeout_ms = 10000;  // whole operation, retries included
  std::string tls_ca;      // PEM file: TLS, verifying the servers against this CA
};

// Every node's view as a table, or one JSON object with --json: leader,
// term, commit_index, nodes, and the job as the leader applied it (epoch,
// members, ranks, checkpoint).
int RunStatus(const ClientCmdOptions& opt, bool json);

struct KvCmdOptions {
  std::string op;  // get | put | cas | watch
  std::string key;
  std::string value;           // put, cas: the new value
  std::string expected;        // cas: the required current value
  bool expect_absent = false;  // cas: the key must not exist (expected ignored)
  // watch: prints the value (one line) each time it changes, after `count`
  // lines it exits (0: never). A server-side watch from revision to revision,
  // so every change is printed, even one that changes back at once. With
  // `prefix`, every key under KEY, as "KEY VALUE" lines.
  int count = 0;
  bool prefix = false;
};
int RunKv(const ClientCmdOptions& opt, const KvCmdOptions& kv);

// `cohort job show`: the job (epoch, members and ranks, last committed
// checkpoint) by a linearizable read; a table, or JSON with --json.
int RunJobShow(const ClientCmdOptions& opt, bool json);

struct KvBenchOptions {
  int clients = 1;  // concurrent clients, one thread and one client id each
  int ops = 1000;   // puts per client
  int value_bytes = 128;
};
// Puts from `clients` threads; prints one line of JSON: ops, seconds,
// puts_per_s, p50_ms, p99_ms, errors. Exit 1 if any put failed.
int RunKvBench(const ClientCmdOptions& opt, const KvBenchOptions& bench);

}  // namespace cohort::tools
