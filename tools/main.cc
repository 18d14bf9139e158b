// The `cohort` command-line tool. CLI11 is included here and nowhere else.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>

#include "cohort/config.h"
#include "collectives/bench/runner.h"
#include "sharding/shard_report.h"
#include "tools/commands.h"
#include "tools/coordinator_cmd.h"
#include "tools/data_cmd.h"
#include "tools/eval_cmd.h"
#include "tools/generate_cmd.h"

namespace {

// Every subcommand: its options and, once parsed, whether it was given.
struct Commands {
  cohort::tools::TrainOptions train;
  CLI::App* train_cmd = nullptr;
  cohort::elastic::LaunchOptions launch;
  std::string launch_log_level = "warn";
  CLI::App* launch_cmd = nullptr;
  cohort::tools::EvalOptions eval_opt;
  CLI::App* eval_cmd = nullptr;
  cohort::tools::GenerateCmdOptions gen_opt;
  CLI::App* generate_cmd = nullptr;
  CLI::App* ckpt_cmd = nullptr;
  std::string ckpt_dir;
  bool ckpt_json = false;
  CLI::App* inspect_cmd = nullptr;
  CLI::App* ckverify_cmd = nullptr;
  cohort::tools::CkptCoordinatorOptions ckpt_coord;
  CLI::App* data_cmd = nullptr;
  cohort::DataGenOptions gen;
  int64_t classes = gen.teacher.classes;
  CLI::App* gen_cmd = nullptr;
  std::string verify_dir;
  CLI::App* verify_cmd = nullptr;
  cohort::TokenizeOptions tokenize;
  bool tokenize_json = false;
  CLI::App* tokenize_cmd = nullptr;
  cohort::ShardCmdOptions shard;
  CLI::App* shard_cmd = nullptr;
  cohort::bench::BenchCmdOptions bench;
  CLI::App* bench_cmd = nullptr;
  cohort::tools::CoordinatorCmdOptions coord;
  CLI::App* coord_cmd = nullptr;
  cohort::tools::ClientCmdOptions client;
  bool status_json = false;
  CLI::App* status_cmd = nullptr;
  CLI::App* kv_cmd = nullptr;
  cohort::tools::KvCmdOptions kv;
  CLI::App* kv_get = nullptr;
  CLI::App* kv_put = nullptr;
  CLI::App* kv_cas = nullptr;
  CLI::App* kv_watch = nullptr;
  bool job_json = false;
  CLI::App* job_cmd = nullptr;
  CLI::App* job_show = nullptr;
  cohort::tools::KvBenchOptions kv_bench_opt;
  CLI::App* kv_bench = nullptr;
};

void AddTrain(CLI::App& app, Commands& c) {
  c.train_cmd = app.add_subcommand("train", "Run one training worker (under mpirun: one rank)");
  c.train_cmd->add_option("--config", c.train.config_path, "YAML training config")->required();
  c.train_cmd->add_option(
      "--steps", c.train.steps,
      "Override train.steps (0: no step; with --save-params, the initial parameters)");
  c.train_cmd->add_option(
      "--backend", c.train.backend,
      "Communication backend: auto | mpi | shm | gloo | nccl (auto: nccl on GPUs)");
  c.train_cmd->add_flag(
      "--recalibrate", c.train.recalibrate,
      "auto: measure the routing table again instead of reading it from the cache "
      "($COHORT_CACHE_DIR, else ~/.cache/cohort)");
  c.train_cmd
      ->add_option(
          "--device", c.train.device,
          "Where to train: cpu | cuda (the GPU of each rank's local rank) | auto (cuda when every "
          "rank has a GPU); default: train.device of the config (cpu)")
      ->check(CLI::IsMember({"cpu", "cuda", "auto"}));
  c.train_cmd->add_option(
      "--store-dir", c.train.store_dir,
      "gloo: rendezvous directory every rank sees (default: a temp dir, one host)");
  c.train_cmd->add_option(
      "--save-params", c.train.save_params,
      "Write the final parameters (safetensors); {rank} in the path: every rank writes its own");
  c.train_cmd->add_option("--timeline", c.train.timeline,
                          "Write a Chrome trace (Perfetto) of every rank's steps");
  c.train_cmd->add_option("--history", c.train.history,
                          "Write one JSON line per logged step and per evaluation (rank 0)");
  c.train_cmd->add_option("--threads", c.train.threads,
                          "BLAS threads per rank (default: cores / ranks on this host)");
  c.train_cmd->add_option("--log-level", c.train.log_level,
                          "stderr log level: debug | info | warn | error");
  c.train_cmd->add_flag("--verbose,-v", c.train.verbose, "Every rank logs at info level to stderr");
  c.train_cmd->add_flag("--no-resume", c.train.no_resume,
                        "Start afresh even when checkpoint.dir holds a checkpoint");
  c.train_cmd->add_option("--checkpoint-dir", c.train.checkpoint_dir,
                          "Override checkpoint.dir (every rank must see it)");
  c.train_cmd->add_option("--checkpoint-every", c.train.checkpoint_every,
                          "Override checkpoint.every (steps; 0: only at the end)");
  c.train_cmd->add_option(
      "--metrics-port", c.train.metrics_port,
      "Serve Prometheus metrics on this port (+ local rank under mpirun; 0: any free port)");
  c.train_cmd->add_option("--metrics-address", c.train.metrics_address,
                          "Bind address of the metrics endpoint (0.0.0.0)");

  c.launch_cmd = app.add_subcommand("launch",
                                    "Elastic agent: start N local workers (-- CMD ...), restart "
                                    "dead ones, re-form the job in place");
  c.launch_cmd->add_option("--nproc", c.launch.nproc, "Workers to start on this host")->required();
  c.launch_cmd->add_option("--min", c.launch.min,
                           "Fewest workers the job trains with (default: --nproc)");
  c.launch_cmd->add_option("--max", c.launch.max, "Most workers in one epoch (default: --nproc)");
  c.launch_cmd->add_option("--coordinator", c.launch.coordinator,
                           "HOST:PORT,... of a running coordinator (default: embedded)");
  c.launch_cmd->add_option("--token-file", c.launch.token_file,
                           "The coordinator's shared secret (with --coordinator)");
  c.launch_cmd->add_option("--data-dir", c.launch.data_dir,
                           "Embedded coordinator's WAL directory (default: a temp dir)");
  c.launch_cmd->add_option("--job", c.launch.job, "Key prefix of the job in the coordinator");
  c.launch_cmd->add_option("--max-restarts", c.launch.max_restarts,
                           "Restarts of dead workers, in all (default 0)");
  c.launch_cmd->add_option(
      "--collective-timeout-ms", c.launch.collective_timeout_ms,
      "Gloo bootstrap and operation timeout: how long a hung peer can block the others");
  c.launch_cmd->add_option("--snapshot-every", c.launch.snapshot_every,
                           "Steps between in-memory copies of the state");
  c.launch_cmd->add_option(
      "--join-grace-ms", c.launch.join_grace_ms,
      "The first epoch waits this long for --nproc workers, then starts with >= --min");
  c.launch_cmd->add_option("--health-pause-ms", c.launch.health_pause_ms,
                           "Heartbeat silence tolerated before a worker is suspected");
  c.launch_cmd->add_option("--phi-threshold", c.launch.phi_threshold,
                           "Suspicion (phi) above which a worker is evicted");
  c.launch_cmd->add_option("--probe-interval-ms", c.launch.probe_interval_ms,
                           "Health probes of every worker, this often (default 100)");
  c.launch_cmd->add_option("--probe-deadline-ms", c.launch.probe_deadline_ms,
                           "A probe unanswered this long failed (default 250)");
  c.launch_cmd->add_option("--failure-threshold", c.launch.failure_threshold,
                           "Consecutive failed probes that evict a worker (default 4)");
  c.launch_cmd->add_option(
      "--cooldown-ms", c.launch.cooldown_ms,
      "Evicted worker: first re-probe after this; doubles per re-open (default 1000)");
  c.launch_cmd->add_option(
      "--hung-kill-ms", c.launch.hung_kill_ms,
      "Kill a worker still evicted this long after its eviction (0: never; default 60000)");
  c.launch_cmd->add_option("--log-level", c.launch_log_level, "debug | info | warn | error");
  c.launch_cmd->add_option(
      "--metrics-port", c.launch.metrics_port,
      "Worker i serves Prometheus metrics on this port + i (0: any free port)");
  c.launch_cmd->add_option("--metrics-address", c.launch.metrics_address,
                           "Bind address of the workers' metrics (0.0.0.0)");
  c.launch_cmd->add_option("command", c.launch.command, "The worker command, after --");
}

void AddModelTools(CLI::App& app, Commands& c) {
  c.eval_cmd =
      app.add_subcommand("eval", "Evaluate the newest committed checkpoint on its held-out split");
  c.eval_cmd
      ->add_option("--checkpoint", c.eval_opt.checkpoint, "Checkpoint directory (checkpoint.dir)")
      ->required();
  c.eval_cmd->add_option("--config", c.eval_opt.config_path,
                         "Config (default: the one saved with the checkpoint)");
  c.eval_cmd->add_flag("--json", c.eval_opt.json, "Print JSON (with the confusion matrix)");

  c.generate_cmd =
      app.add_subcommand("generate", "Sample text from the newest committed GPT checkpoint");
  c.generate_cmd
      ->add_option("--checkpoint", c.gen_opt.checkpoint, "Checkpoint directory (checkpoint.dir)")
      ->required();
  c.generate_cmd->add_option("--prompt", c.gen_opt.prompt, "Text to continue (one token per byte)")
      ->required();
  c.generate_cmd->add_option("--tokens", c.gen_opt.sampling.tokens, "Tokens to sample")->required();
  c.generate_cmd->add_option("--temperature", c.gen_opt.sampling.temperature,
                             "Softmax temperature (0: greedy)");
  c.generate_cmd->add_option("--top-k", c.gen_opt.sampling.top_k,
                             "Sample from the k most likely tokens (0: all)");
  c.generate_cmd->add_option("--seed", c.gen_opt.sampling.seed, "Sampling seed");
  c.generate_cmd->add_flag("--json", c.gen_opt.json, "Print {tokens, prompt_len, text} as JSON");

  c.ckpt_cmd = app.add_subcommand("ckpt", "Inspect and verify checkpoints");
  c.ckpt_cmd->require_subcommand(1);
  c.inspect_cmd = c.ckpt_cmd->add_subcommand("inspect", "List the checkpoints in a directory");
  c.inspect_cmd->add_option("dir", c.ckpt_dir, "Checkpoint directory (checkpoint.dir)")->required();
  c.inspect_cmd->add_flag("--json", c.ckpt_json, "Print JSON");
  c.ckverify_cmd =
      c.ckpt_cmd->add_subcommand("verify", "Check every committed checkpoint's shards");
  c.ckverify_cmd->add_option("dir", c.ckpt_dir, "Checkpoint directory (checkpoint.dir)")
      ->required();
  for (CLI::App* cmd : {c.inspect_cmd, c.ckverify_cmd}) {
    cmd->add_option("--coordinator", c.ckpt_coord.coordinator,
                    "Also show whether this coordinator (HOST:PORT,...) committed each checkpoint");
    cmd->add_option("--token-file", c.ckpt_coord.token_file,
                    "The coordinator's shared secret (with --coordinator)");
    cmd->add_option("--job", c.ckpt_coord.job, "The job's key prefix in the coordinator");
  }
}

void AddData(CLI::App& app, Commands& c) {
  c.data_cmd = app.add_subcommand("data", "Write and check datasets");
  c.data_cmd->require_subcommand(1);
  c.gen_cmd =
      c.data_cmd->add_subcommand("gen", "Write the synthetic teacher dataset as shard files");
  c.gen_cmd->add_option("--out", c.gen.out_dir, "Output directory")->required();
  c.gen_cmd->add_option("--samples", c.gen.samples, "Samples in total");
  c.gen_cmd->add_option("--shards", c.gen.num_shards, "Number of shard files");
  c.gen_cmd->add_option("--seed", c.gen.teacher.seed,
                        "Seed (same as the config's seed for identical data)");
  c.gen_cmd->add_option("--features", c.gen.teacher.features, "Input features");
  c.gen_cmd->add_option("--classes", c.classes, "Classes");
  c.gen_cmd->add_option("--teacher-hidden", c.gen.teacher.hidden, "Width of the teacher network");
  c.verify_cmd = c.data_cmd->add_subcommand("verify",
                                            "Check every shard's header and checksum, or every "
                                            "llm.c token file's header, size and tokens");
  c.verify_cmd->add_option("dir", c.verify_dir, "Dataset directory")->required();
  c.tokenize_cmd = c.data_cmd->add_subcommand(
      "tokenize",
      "Text files to llm.c token files (bytes as tokens, vocab 256): train shards and a val file");
  c.tokenize_cmd
      ->add_option("--input", c.tokenize.inputs,
                   "Text files or directories (a directory's regular files; "
                   "binary ones skipped)")
      ->required();
  c.tokenize_cmd->add_option("--out", c.tokenize.out_dir, "Output directory (created if missing)")
      ->required();
  c.tokenize_cmd->add_option("--shards", c.tokenize.shards, "Training files (default 1)");
  c.tokenize_cmd->add_option("--val-fraction", c.tokenize.val_fraction,
                             "Share of the tokens, at the end, for validation (default 0.1)");
  c.tokenize_cmd->add_option("--name", c.tokenize.name,
                             "File name prefix: NAME_train_000000.bin ... (default text)");
  c.tokenize_cmd->add_flag("--json", c.tokenize_json, "Print one JSON object");

  c.shard_cmd = app.add_subcommand(
      "shard",
      "Consistent-hash shard placement, and how many shards move when workers join or leave");
  c.shard_cmd->add_option("--workers", c.shard.workers, "Workers before the change")->required();
  c.shard_cmd->add_option("--shards", c.shard.shards, "Dataset shards")->required();
  c.shard_cmd->add_option("--vnodes", c.shard.vnodes, "Virtual nodes per worker (ring, bounded)");
  c.shard_cmd->add_option("--join", c.shard.join, "Workers that join");
  c.shard_cmd->add_option("--leave", c.shard.leave, "Workers that leave (chosen by --seed)");
  c.shard_cmd->add_option("--scheme", c.shard.scheme, "ring | bounded | jump | rendezvous | all");
  c.shard_cmd->add_option("--seed", c.shard.seed, "Hash seed and choice of leaving workers");
  c.shard_cmd->add_option("--eps", c.shard.eps,
                          "Bounded-loads slack: no worker above (1+eps) x mean");
  c.shard_cmd->add_flag("--json", c.shard.json, "Print one JSON object instead of the table");
}

void AddBench(CLI::App& app, Commands& c) {
  c.bench_cmd = app.add_subcommand(
      "bench", "Collective benchmark with the nccl-tests interface (run under mpirun)");
  c.bench_cmd->add_option("-b,--minbytes", c.bench.min_bytes, "Smallest message (K/M/G suffixes)");
  c.bench_cmd->add_option("-e,--maxbytes", c.bench.max_bytes, "Largest message (K/M/G suffixes)");
  c.bench_cmd->add_option("-f,--stepfactor", c.bench.step_factor, "Size multiplier per step");
  c.bench_cmd->add_option("-n,--iters", c.bench.iters, "Timed iterations per size");
  c.bench_cmd->add_option("-w,--warmup_iters", c.bench.warmup, "Warm-up iterations per size");
  c.bench_cmd->add_option("-c,--check", c.bench.check, "Check every element of every result (0/1)");
  c.bench_cmd->add_option("-d,--datatype", c.bench.dtype,
                          "float|double|half|bfloat16|int32|int64|all");
  c.bench_cmd->add_option("-o,--redop", c.bench.op, "sum|avg|max|min|prod|all");
  c.bench_cmd->add_option("-r,--root", c.bench.root, "Root of broadcast and reduce");
  c.bench_cmd->add_option("-R,--registered", c.bench.registered,
                          "1: buffers registered with the communicator");
  c.bench_cmd->add_option("--op", c.bench.collective,
                          "allreduce|reducescatter|allgather|broadcast|reduce|alltoall");
  c.bench_cmd->add_option("--backend", c.bench.backends,
                          "Backends to compare, comma-separated: mpi,shm,gloo,auto");
  c.bench_cmd->add_flag(
      "--recalibrate", c.bench.recalibrate,
      "auto: measure the routing table again instead of reading it from the cache");
  c.bench_cmd->add_option("--json", c.bench.json, "Write every row as a JSON list to FILE");
  c.bench_cmd->add_option("--plot", c.bench.plot,
                          "Draw busbw against size per backend to FILE.png");
}

void AddCoordinator(CLI::App& app, Commands& c) {
  // One Raft node, and the client commands.
  c.coord_cmd = app.add_subcommand("coordinator", "Run one Raft node of the coordinator");
  c.coord_cmd->add_option("--id", c.coord.id, "This node's id (one of --peers)")->required();
  c.coord_cmd
      ->add_option("--peers", c.coord.peers, "Every node: 1=HOST:PORT,2=HOST:PORT,3=HOST:PORT")
      ->required();
  c.coord_cmd->add_option("--data-dir", c.coord.data_dir, "WAL and snapshot directory")->required();
  c.coord_cmd
      ->add_option("--token-file", c.coord.token_file, "File holding the cluster's shared secret")
      ->required();
  c.coord_cmd->add_option("--listen", c.coord.listen,
                          "Bind address (default: this node's --peers entry)");
  c.coord_cmd->add_option("--tick-ms", c.coord.tick_ms, "Raft tick");
  c.coord_cmd->add_option("--heartbeat-ms", c.coord.heartbeat_ms, "Leader heartbeat interval");
  c.coord_cmd->add_option("--election-ms", c.coord.election_ms,
                          "Election timeout (randomised in [t, 2t))");
  c.coord_cmd->add_option("--snapshot-every", c.coord.snapshot_every,
                          "Applied entries between snapshots");
  c.coord_cmd->add_option("--log-level", c.coord.log_level, "debug | info | warn | error");
  c.coord_cmd->add_option("--tls-cert", c.coord.tls_cert, "TLS: this node's certificate (PEM)");
  c.coord_cmd->add_option("--tls-key", c.coord.tls_key, "TLS: its private key (PEM)");
  c.coord_cmd->add_option("--tls-ca", c.coord.tls_ca,
                          "TLS: CA that signed every node's certificate (PEM)");
  c.coord_cmd->add_option("--metrics-port", c.coord.metrics_port,
                          "Serve Prometheus metrics on this port (0: any free port)");
  c.coord_cmd->add_option("--metrics-address", c.coord.metrics_address,
                          "Bind address of the metrics endpoint (0.0.0.0)");
  c.status_cmd = app.add_subcommand("status", "Leader, term, commit index and every node's view");
  // The flags every coordinator c.client command takes.
  const auto add_client_flags = [&c](CLI::App* cmd, const char* timeout_help) {
    cmd->add_option("--coordinator", c.client.coordinator, "HOST:PORT,HOST:PORT,...")->required();
    cmd->add_option("--token-file", c.client.token_file, "File holding the cluster's shared secret")
        ->required();
    cmd->add_option("--timeout-ms", c.client.timeout_ms, timeout_help);
    cmd->add_option("--tls-ca", c.client.tls_ca, "TLS: CA of the nodes' certificates (PEM)");
  };
  add_client_flags(c.status_cmd, "Per-node timeout");
  c.status_cmd->add_flag("--json", c.status_json, "Print one JSON object");
  c.kv_cmd = app.add_subcommand("kv", "Read and write the coordinator's key-value space");
  c.kv_cmd->require_subcommand(1);
  add_client_flags(c.kv_cmd, "Deadline of the operation, retries included");
  c.kv_cmd->fallthrough();
  c.kv_get = c.kv_cmd->add_subcommand("get", "Print KEY's value (linearizable read)");
  c.kv_get->add_option("key", c.kv.key, "Key")->required();
  c.kv_put = c.kv_cmd->add_subcommand("put", "Set KEY to VALUE");
  c.kv_put->add_option("key", c.kv.key, "Key")->required();
  c.kv_put->add_option("value", c.kv.value, "Value")->required();
  c.kv_cas = c.kv_cmd->add_subcommand("cas", "Set KEY to NEW if it holds OLD (exit 1 if not)");
  c.kv_cas->add_option("key", c.kv.key, "Key")->required();
  c.kv_cas->add_option("old", c.kv.expected, "Required current value (ignored with --absent)")
      ->required();
  c.kv_cas->add_option("new", c.kv.value, "New value")->required();
  c.kv_cas->add_flag("--absent", c.kv.expect_absent, "Swap only if KEY does not exist");
  c.kv_watch = c.kv_cmd->add_subcommand(
      "watch", "Print KEY's value each time it changes (server-side watch)");
  c.kv_watch->add_option("key", c.kv.key, "Key")->required();
  c.kv_watch->add_option("--count", c.kv.count,
                         "Exit after this many values (0: run until interrupted)");
  c.kv_watch->add_flag("--prefix", c.kv.prefix, "Every key starting with KEY (prints KEY VALUE)");
  c.job_cmd = app.add_subcommand("job", "The job registry in the coordinator");
  c.job_cmd->require_subcommand(1);
  add_client_flags(c.job_cmd, "Deadline of the operation, retries included");
  c.job_cmd->fallthrough();
  c.job_show =
      c.job_cmd->add_subcommand("show", "Epoch, members and ranks, last committed checkpoint");
  c.job_show->add_flag("--json", c.job_json, "Print one JSON object");
  c.kv_bench =
      c.kv_cmd->add_subcommand("bench", "Put load: throughput and commit latency p50/p99 (JSON)");
  c.kv_bench->add_option("--clients", c.kv_bench_opt.clients, "Concurrent clients (threads)");
  c.kv_bench->add_option("--ops", c.kv_bench_opt.ops, "Puts per client");
  c.kv_bench->add_option("--value-bytes", c.kv_bench_opt.value_bytes, "Bytes per value");
}

int Dispatch(Commands& c, int argc, char** argv) {
  if (*c.launch_cmd) return cohort::tools::RunLaunch(c.launch, c.launch_log_level);
  if (*c.train_cmd) return cohort::tools::RunTrain(c.train, &argc, &argv);
  if (*c.bench_cmd) return cohort::bench::RunBench(c.bench, &argc, &argv);
  if (*c.gen_cmd) {
    c.gen.teacher.classes = static_cast<int32_t>(c.classes);
    return cohort::tools::RunDataGen(c.gen);
  }
  if (*c.shard_cmd) return cohort::RunShardCommand(c.shard, std::cout, std::cerr);
  if (*c.generate_cmd) return cohort::tools::RunGenerate(c.gen_opt);
  if (*c.eval_cmd) return cohort::tools::RunEval(c.eval_opt, &argc, &argv);
  if (*c.inspect_cmd) return cohort::tools::RunCkptInspect(c.ckpt_dir, c.ckpt_json, c.ckpt_coord);
  if (*c.ckverify_cmd) return cohort::tools::RunCkptVerify(c.ckpt_dir, c.ckpt_coord);
  if (*c.verify_cmd) return cohort::tools::RunDataVerifyDir(c.verify_dir);
  if (*c.tokenize_cmd) return cohort::tools::RunDataTokenize(c.tokenize, c.tokenize_json);
  if (*c.coord_cmd) return cohort::tools::RunCoordinator(c.coord);
  if (*c.status_cmd) return cohort::tools::RunStatus(c.client, c.status_json);
  if (*c.job_show) return cohort::tools::RunJobShow(c.client, c.job_json);
  if (*c.kv_bench) return cohort::tools::RunKvBench(c.client, c.kv_bench_opt);
  if (*c.kv_cmd) {
    c.kv.op = *c.kv_get ? "get" : *c.kv_put ? "put" : *c.kv_watch ? "watch" : "cas";
    return cohort::tools::RunKv(c.client, c.kv);
  }
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Cohort: data- and model-parallel training runtime"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("cohort ") + COHORT_VERSION);
  Commands c;
  AddTrain(app, c);
  AddModelTools(app, c);
  AddData(app, c);
  AddBench(app, c);
  AddCoordinator(app, c);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return Dispatch(c, argc, argv);
}
