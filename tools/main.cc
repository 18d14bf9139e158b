// The `cohort` command-line tool. CLI11 is included here and nowhere else.
#include <CLI/CLI.hpp>

#include <cstdio>

#include "cohort/config.h"
#include <iostream>

#include "tools/bench_cmd.h"
#include "tools/commands.h"
#include "tools/coordinator_cmd.h"
#include "tools/data_cmd.h"
#include "tools/eval_cmd.h"
#include "tools/generate_cmd.h"
#include "tools/shard_cmd.h"

int main(int argc, char** argv) {
  CLI::App app{"Cohort: data- and model-parallel training runtime"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("cohort ") + COHORT_VERSION);

  cohort::tools::TrainOptions train;
  CLI::App* train_cmd = app.add_subcommand("train", "Run one training worker (under mpirun: one rank)");
  train_cmd->add_option("--config", train.config_path, "YAML training config")->required();
  train_cmd->add_option("--steps", train.steps, "Override train.steps (0: no step; with --save-params, the initial parameters)");
  train_cmd->add_option("--backend", train.backend,
                        "Communication backend: auto | mpi | shm | gloo | nccl (auto: nccl on GPUs)");
  train_cmd->add_option("--device", train.device,
                        "Where to train: cpu | cuda (the GPU of each rank's local rank) | auto (cuda when every "
                        "rank has a GPU); default: train.device of the config (cpu)")
      ->check(CLI::IsMember({"cpu", "cuda", "auto"}));
  train_cmd->add_option("--store-dir", train.store_dir, "gloo: rendezvous directory every rank sees (default: a temp dir, one host)");
  train_cmd->add_option("--save-params", train.save_params, "Write the final parameters (safetensors); {rank} in the path: every rank writes its own");
  train_cmd->add_option("--timeline", train.timeline, "Write a Chrome trace (Perfetto) of every rank's steps");
  train_cmd->add_option("--history", train.history, "Write one JSON line per logged step and per evaluation (rank 0)");
  train_cmd->add_option("--threads", train.threads, "BLAS threads per rank (default: cores / ranks on this host)");
  train_cmd->add_option("--log-level", train.log_level, "stderr log level: debug | info | warn | error");
  train_cmd->add_flag("--verbose,-v", train.verbose, "Every rank logs at info level to stderr");
  train_cmd->add_flag("--no-resume", train.no_resume, "Start afresh even when checkpoint.dir holds a checkpoint");
  train_cmd->add_option("--checkpoint-dir", train.checkpoint_dir, "Override checkpoint.dir (every rank must see it)");
  train_cmd->add_option("--checkpoint-every", train.checkpoint_every, "Override checkpoint.every (steps; 0: only at the end)");
  train_cmd->add_option("--metrics-port", train.metrics_port,
                        "Serve Prometheus metrics on this port (+ local rank under mpirun; 0: any free port)");
  train_cmd->add_option("--metrics-address", train.metrics_address, "Bind address of the metrics endpoint (0.0.0.0)");

  cohort::elastic::LaunchOptions launch;
  std::string launch_log_level = "warn";
  CLI::App* launch_cmd = app.add_subcommand(
      "launch", "Elastic agent: start N local workers (-- CMD ...), restart dead ones, re-form the job in place");
  launch_cmd->add_option("--nproc", launch.nproc, "Workers to start on this host")->required();
  launch_cmd->add_option("--min", launch.min, "Fewest workers the job trains with (default: --nproc)");
  launch_cmd->add_option("--max", launch.max, "Most workers in one epoch (default: --nproc)");
  launch_cmd->add_option("--coordinator", launch.coordinator, "HOST:PORT,... of a running coordinator (default: embedded)");
  launch_cmd->add_option("--token-file", launch.token_file, "The coordinator's shared secret (with --coordinator)");
  launch_cmd->add_option("--data-dir", launch.data_dir, "Embedded coordinator's WAL directory (default: a temp dir)");
  launch_cmd->add_option("--job", launch.job, "Key prefix of the job in the coordinator");
  launch_cmd->add_option("--max-restarts", launch.max_restarts, "Restarts of dead workers, in all (default 0)");
  launch_cmd->add_option("--collective-timeout-ms", launch.collective_timeout_ms,
                         "Gloo bootstrap and operation timeout: how long a hung peer can block the others");
  launch_cmd->add_option("--snapshot-every", launch.snapshot_every, "Steps between in-memory copies of the state");
  launch_cmd->add_option("--join-grace-ms", launch.join_grace_ms,
                         "The first epoch waits this long for --nproc workers, then starts with >= --min");
  launch_cmd->add_option("--health-pause-ms", launch.health_pause_ms,
                         "Heartbeat silence tolerated before a worker is suspected");
  launch_cmd->add_option("--phi-threshold", launch.phi_threshold, "Suspicion (phi) above which a worker is evicted");
  launch_cmd->add_option("--probe-interval-ms", launch.probe_interval_ms, "Health probes of every worker, this often (default 100)");
  launch_cmd->add_option("--probe-deadline-ms", launch.probe_deadline_ms, "A probe unanswered this long failed (default 250)");
  launch_cmd->add_option("--failure-threshold", launch.failure_threshold, "Consecutive failed probes that evict a worker (default 4)");
  launch_cmd->add_option("--cooldown-ms", launch.cooldown_ms, "Evicted worker: first re-probe after this; doubles per re-open (default 1000)");
  launch_cmd->add_option("--hung-kill-ms", launch.hung_kill_ms, "Kill a worker still evicted this long after its eviction (0: never; default 60000)");
  launch_cmd->add_option("--log-level", launch_log_level, "debug | info | warn | error");
  launch_cmd->add_option("--metrics-port", launch.metrics_port,
                         "Worker i serves Prometheus metrics on this port + i (0: any free port)");
  launch_cmd->add_option("--metrics-address", launch.metrics_address, "Bind address of the workers' metrics (0.0.0.0)");
  launch_cmd->add_option("command", launch.command, "The worker command, after --");

  cohort::tools::EvalOptions eval_opt;
  CLI::App* eval_cmd = app.add_subcommand("eval", "Evaluate the newest committed checkpoint on its held-out split");
  eval_cmd->add_option("--checkpoint", eval_opt.checkpoint, "Checkpoint directory (checkpoint.dir)")->required();
  eval_cmd->add_option("--config", eval_opt.config_path, "Config (default: the one saved with the checkpoint)");
  eval_cmd->add_flag("--json", eval_opt.json, "Print JSON (with the confusion matrix)");

  cohort::tools::GenerateCmdOptions gen_opt;
  CLI::App* generate_cmd = app.add_subcommand("generate", "Sample text from the newest committed GPT checkpoint");
  generate_cmd->add_option("--checkpoint", gen_opt.checkpoint, "Checkpoint directory (checkpoint.dir)")->required();
  generate_cmd->add_option("--prompt", gen_opt.prompt, "Text to continue (one token per byte)")->required();
  generate_cmd->add_option("--tokens", gen_opt.sampling.tokens, "Tokens to sample")->required();
  generate_cmd->add_option("--temperature", gen_opt.sampling.temperature, "Softmax temperature (0: greedy)");
  generate_cmd->add_option("--top-k", gen_opt.sampling.top_k, "Sample from the k most likely tokens (0: all)");
  generate_cmd->add_option("--seed", gen_opt.sampling.seed, "Sampling seed");
  generate_cmd->add_flag("--json", gen_opt.json, "Print {tokens, prompt_len, text} as JSON");

  CLI::App* ckpt_cmd = app.add_subcommand("ckpt", "Inspect and verify checkpoints");
  ckpt_cmd->require_subcommand(1);
  std::string ckpt_dir;
  bool ckpt_json = false;
  CLI::App* inspect_cmd = ckpt_cmd->add_subcommand("inspect", "List the checkpoints in a directory");
  inspect_cmd->add_option("dir", ckpt_dir, "Checkpoint directory (checkpoint.dir)")->required();
  inspect_cmd->add_flag("--json", ckpt_json, "Print JSON");
  CLI::App* ckverify_cmd = ckpt_cmd->add_subcommand("verify", "Check every committed checkpoint's shards");
  ckverify_cmd->add_option("dir", ckpt_dir, "Checkpoint directory (checkpoint.dir)")->required();
  cohort::tools::CkptCoordinatorOptions ckpt_coord;
  for (CLI::App* cmd : {inspect_cmd, ckverify_cmd}) {
    cmd->add_option("--coordinator", ckpt_coord.coordinator,
                    "Also show whether this coordinator (HOST:PORT,...) committed each checkpoint");
    cmd->add_option("--token-file", ckpt_coord.token_file, "The coordinator's shared secret (with --coordinator)");
    cmd->add_option("--job", ckpt_coord.job, "The job's key prefix in the coordinator");
  }

  CLI::App* data_cmd = app.add_subcommand("data", "Write and check datasets");
  data_cmd->require_subcommand(1);
  cohort::DataGenOptions gen;
  int64_t classes = gen.teacher.classes;
  CLI::App* gen_cmd = data_cmd->add_subcommand("gen", "Write the synthetic teacher dataset as shard files");
  gen_cmd->add_option("--out", gen.out_dir, "Output directory")->required();
  gen_cmd->add_option("--samples", gen.samples, "Samples in total");
  gen_cmd->add_option("--shards", gen.num_shards, "Number of shard files");
  gen_cmd->add_option("--seed", gen.teacher.seed, "Seed (same as the config's seed for identical data)");
  gen_cmd->add_option("--features", gen.teacher.features, "Input features");
  gen_cmd->add_option("--classes", classes, "Classes");
  gen_cmd->add_option("--teacher-hidden", gen.teacher.hidden, "Width of the teacher network");
  std::string verify_dir;
  CLI::App* verify_cmd = data_cmd->add_subcommand(
      "verify", "Check every shard's header and checksum, or every llm.c token file's header, size and tokens");
  verify_cmd->add_option("dir", verify_dir, "Dataset directory")->required();
  cohort::TokenizeOptions tokenize;
  bool tokenize_json = false;
  CLI::App* tokenize_cmd = data_cmd->add_subcommand(
      "tokenize", "Text files to llm.c token files (bytes as tokens, vocab 256): train shards and a val file");
  tokenize_cmd->add_option("--input", tokenize.inputs, "Text files or directories (a directory's regular files; "
                           "binary ones skipped)")->required();
  tokenize_cmd->add_option("--out", tokenize.out_dir, "Output directory (created if missing)")->required();
  tokenize_cmd->add_option("--shards", tokenize.shards, "Training files (default 1)");
  tokenize_cmd->add_option("--val-fraction", tokenize.val_fraction, "Share of the tokens, at the end, for validation (default 0.1)");
  tokenize_cmd->add_option("--name", tokenize.name, "File name prefix: NAME_train_000000.bin ... (default text)");
  tokenize_cmd->add_flag("--json", tokenize_json, "Print one JSON object");

  cohort::ShardCmdOptions shard;
  CLI::App* shard_cmd = app.add_subcommand(
      "shard", "Consistent-hash shard placement, and how many shards move when workers join or leave");
  shard_cmd->add_option("--workers", shard.workers, "Workers before the change")->required();
  shard_cmd->add_option("--shards", shard.shards, "Dataset shards")->required();
  shard_cmd->add_option("--vnodes", shard.vnodes, "Virtual nodes per worker (ring, bounded)");
  shard_cmd->add_option("--join", shard.join, "Workers that join");
  shard_cmd->add_option("--leave", shard.leave, "Workers that leave (chosen by --seed)");
  shard_cmd->add_option("--scheme", shard.scheme, "ring | bounded | jump | rendezvous | all");
  shard_cmd->add_option("--seed", shard.seed, "Hash seed and choice of leaving workers");
  shard_cmd->add_option("--eps", shard.eps, "Bounded-loads slack: no worker above (1+eps) x mean");
  shard_cmd->add_flag("--json", shard.json, "Print one JSON object instead of the table");

  cohort::tools::BenchCmdOptions bench;
  CLI::App* bench_cmd = app.add_subcommand(
      "bench", "Collective benchmark with the nccl-tests interface (run under mpirun)");
  bench_cmd->add_option("-b,--minbytes", bench.min_bytes, "Smallest message (K/M/G suffixes)");
  bench_cmd->add_option("-e,--maxbytes", bench.max_bytes, "Largest message (K/M/G suffixes)");
  bench_cmd->add_option("-f,--stepfactor", bench.step_factor, "Size multiplier per step");
  bench_cmd->add_option("-n,--iters", bench.iters, "Timed iterations per size");
  bench_cmd->add_option("-w,--warmup_iters", bench.warmup, "Warm-up iterations per size");
  bench_cmd->add_option("-c,--check", bench.check, "Check every element of every result (0/1)");
  bench_cmd->add_option("-d,--datatype", bench.dtype, "float|double|half|bfloat16|int32|int64|all");
  bench_cmd->add_option("-o,--redop", bench.op, "sum|avg|max|min|prod|all");
  bench_cmd->add_option("-r,--root", bench.root, "Root of broadcast and reduce");
  bench_cmd->add_option("-R,--registered", bench.registered, "1: buffers registered with the communicator");
  bench_cmd->add_option("--op", bench.collective, "allreduce|reducescatter|allgather|broadcast|reduce|alltoall");
  bench_cmd->add_option("--backend", bench.backends, "Backends to compare, comma-separated: mpi,shm,gloo,auto");
  bench_cmd->add_option("--json", bench.json, "Write every row as a JSON list to FILE");
  bench_cmd->add_option("--plot", bench.plot, "Draw busbw against size per backend to FILE.png");

  // Coordinator (issue 6): one Raft node, and the client commands.
  cohort::tools::CoordinatorCmdOptions coord;
  CLI::App* coord_cmd = app.add_subcommand("coordinator", "Run one Raft node of the coordinator");
  coord_cmd->add_option("--id", coord.id, "This node's id (one of --peers)")->required();
  coord_cmd->add_option("--peers", coord.peers, "Every node: 1=HOST:PORT,2=HOST:PORT,3=HOST:PORT")->required();
  coord_cmd->add_option("--data-dir", coord.data_dir, "WAL and snapshot directory")->required();
  coord_cmd->add_option("--token-file", coord.token_file, "File holding the cluster's shared secret")->required();
  coord_cmd->add_option("--listen", coord.listen, "Bind address (default: this node's --peers entry)");
  coord_cmd->add_option("--tick-ms", coord.tick_ms, "Raft tick");
  coord_cmd->add_option("--heartbeat-ms", coord.heartbeat_ms, "Leader heartbeat interval");
  coord_cmd->add_option("--election-ms", coord.election_ms, "Election timeout (randomised in [t, 2t))");
  coord_cmd->add_option("--snapshot-every", coord.snapshot_every, "Applied entries between snapshots");
  coord_cmd->add_option("--log-level", coord.log_level, "debug | info | warn | error");
  coord_cmd->add_option("--tls-cert", coord.tls_cert, "TLS: this node's certificate (PEM)");
  coord_cmd->add_option("--tls-key", coord.tls_key, "TLS: its private key (PEM)");
  coord_cmd->add_option("--tls-ca", coord.tls_ca, "TLS: CA that signed every node's certificate (PEM)");
  coord_cmd->add_option("--metrics-port", coord.metrics_port, "Serve Prometheus metrics on this port (0: any free port)");
  coord_cmd->add_option("--metrics-address", coord.metrics_address, "Bind address of the metrics endpoint (0.0.0.0)");
  cohort::tools::ClientCmdOptions client;
  bool status_json = false;
  CLI::App* status_cmd = app.add_subcommand("status", "Leader, term, commit index and every node's view");
  // The flags every coordinator client command takes.
  const auto add_client_flags = [&client](CLI::App* cmd, const char* timeout_help) {
    cmd->add_option("--coordinator", client.coordinator, "HOST:PORT,HOST:PORT,...")->required();
    cmd->add_option("--token-file", client.token_file, "File holding the cluster's shared secret")->required();
    cmd->add_option("--timeout-ms", client.timeout_ms, timeout_help);
    cmd->add_option("--tls-ca", client.tls_ca, "TLS: CA of the nodes' certificates (PEM)");
  };
  add_client_flags(status_cmd, "Per-node timeout");
  status_cmd->add_flag("--json", status_json, "Print one JSON object");
  CLI::App* kv_cmd = app.add_subcommand("kv", "Read and write the coordinator's key-value space");
  kv_cmd->require_subcommand(1);
  add_client_flags(kv_cmd, "Deadline of the operation, retries included");
  kv_cmd->fallthrough();
  cohort::tools::KvCmdOptions kv;
  CLI::App* kv_get = kv_cmd->add_subcommand("get", "Print KEY's value (linearizable read)");
  kv_get->add_option("key", kv.key, "Key")->required();
  CLI::App* kv_put = kv_cmd->add_subcommand("put", "Set KEY to VALUE");
  kv_put->add_option("key", kv.key, "Key")->required();
  kv_put->add_option("value", kv.value, "Value")->required();
  CLI::App* kv_cas = kv_cmd->add_subcommand("cas", "Set KEY to NEW if it holds OLD (exit 1 if not)");
  kv_cas->add_option("key", kv.key, "Key")->required();
  kv_cas->add_option("old", kv.expected, "Required current value (ignored with --absent)")->required();
  kv_cas->add_option("new", kv.value, "New value")->required();
  kv_cas->add_flag("--absent", kv.expect_absent, "Swap only if KEY does not exist");
  CLI::App* kv_watch = kv_cmd->add_subcommand("watch", "Print KEY's value each time it changes (server-side watch)");
  kv_watch->add_option("key", kv.key, "Key")->required();
  kv_watch->add_option("--count", kv.count, "Exit after this many values (0: run until interrupted)");
  kv_watch->add_flag("--prefix", kv.prefix, "Every key starting with KEY (prints KEY VALUE)");
  bool job_json = false;
  CLI::App* job_cmd = app.add_subcommand("job", "The job registry in the coordinator");
  job_cmd->require_subcommand(1);
  add_client_flags(job_cmd, "Deadline of the operation, retries included");
  job_cmd->fallthrough();
  CLI::App* job_show = job_cmd->add_subcommand("show", "Epoch, members and ranks, last committed checkpoint");
  job_show->add_flag("--json", job_json, "Print one JSON object");
  cohort::tools::KvBenchOptions kv_bench_opt;
  CLI::App* kv_bench = kv_cmd->add_subcommand("bench", "Put load: throughput and commit latency p50/p99 (JSON)");
  kv_bench->add_option("--clients", kv_bench_opt.clients, "Concurrent clients (threads)");
  kv_bench->add_option("--ops", kv_bench_opt.ops, "Puts per client");
  kv_bench->add_option("--value-bytes", kv_bench_opt.value_bytes, "Bytes per value");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (*launch_cmd) return cohort::tools::RunLaunch(launch, launch_log_level);
  if (*train_cmd) return cohort::tools::RunTrain(train, &argc, &argv);
  if (*bench_cmd) return cohort::tools::RunBench(bench, &argc, &argv);
  if (*gen_cmd) {
    gen.teacher.classes = static_cast<int32_t>(classes);
    return cohort::tools::RunDataGen(gen);
  }
  if (*shard_cmd) return cohort::RunShardCommand(shard, std::cout, std::cerr);
  if (*generate_cmd) return cohort::tools::RunGenerate(gen_opt);
  if (*eval_cmd) return cohort::tools::RunEval(eval_opt, &argc, &argv);
  if (*inspect_cmd) return cohort::tools::RunCkptInspect(ckpt_dir, ckpt_json, ckpt_coord);
  if (*ckverify_cmd) return cohort::tools::RunCkptVerify(ckpt_dir, ckpt_coord);
  if (*verify_cmd) return cohort::tools::RunDataVerifyDir(verify_dir);
  if (*tokenize_cmd) return cohort::tools::RunDataTokenize(tokenize, tokenize_json);
  if (*coord_cmd) return cohort::tools::RunCoordinator(coord);
  if (*status_cmd) return cohort::tools::RunStatus(client, status_json);
  if (*job_show) return cohort::tools::RunJobShow(client, job_json);
  if (*kv_bench) return cohort::tools::RunKvBench(client, kv_bench_opt);
  if (*kv_cmd) {
    kv.op = *kv_get ? "get" : *kv_put ? "put" : *kv_watch ? "watch" : "cas";
    return cohort::tools::RunKv(client, kv);
  }
  return 2;
}
