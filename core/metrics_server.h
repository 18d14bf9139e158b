#pragma once
// A tiny HTTP/1.x server for the Prometheus endpoint: GET (or HEAD)
// /metrics answers 200 with the registry's text exposition
// (Content-Type: text/plain; version=0.0.4); any other path 404; another
// method 405; a malformed request, or one larger than max_request_bytes,
// 400; a request not complete within read_timeout, 408. Every connection is
// closed after its response (Connection: close), which is what Prometheus
// and curl expect of a simple exporter.
//
// One thread serves every connection (poll over non-blocking sockets, at
// most max_connections at once; more wait in the listen backlog), so a slow
// or silent client delays no other scrape. The registry is read on that
// thread. Plain POSIX sockets: no dependency beyond libc.

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "core/metrics.h"
#include "core/status.h"

namespace cohort::metrics {

// Defaults and bounds (CONTRIBUTING.md, "Limits").
inline constexpr char kDefaultMetricsAddress[] = "0.0.0.0";
inline constexpr size_t kMaxRequestBytes = 8 * 1024;  // request line and headers
inline constexpr std::chrono::milliseconds kReadTimeout{
    5000};  // from accept to the end of the headers
inline constexpr std::chrono::milliseconds kWriteTimeout{5000};  // to send one response
// After the response, unread input is drained this long (or up to
// kMaxLingerBytes) before close, so that closing does not reset the
// connection and destroy the response before the client read it.
inline constexpr std::chrono::milliseconds kLingerTimeout{1000};
inline constexpr size_t kMaxLingerBytes = 64 * 1024;
inline constexpr int kMaxConnections = 16;
inline constexpr int kListenBacklog = 64;
inline constexpr int kMaxPort = 65535;

inline constexpr char kExpositionContentType[] = "text/plain; version=0.0.4; charset=utf-8";

struct MetricsServerOptions {
  std::string address = kDefaultMetricsAddress;  // numeric IPv4/IPv6, or localhost
  int port = 0;                                  // 0: the system chooses (see port())
  size_t max_request_bytes = kMaxRequestBytes;
  std::chrono::milliseconds read_timeout = kReadTimeout;
  std::chrono::milliseconds write_timeout = kWriteTimeout;
  int max_connections = kMaxConnections;
};

// The answer to one request (exposed for tests).
struct HttpResponse {
  int code = 200;
  std::string body;
  std::string content_type = "text/plain; charset=utf-8";
  bool head = false;  // HEAD: headers only
};
// `head` is the request up to and including the blank line that ends the
// headers. Reads the registry only for a GET or HEAD of /metrics.
HttpResponse AnswerRequest(std::string_view head, const Registry& registry);
// The whole response: status line, headers, body.
std::string SerializeResponse(const HttpResponse& r);

class MetricsServer {
 public:
  // Binds options.address:options.port and starts the serving thread.
  // InvalidArgument for a port outside 0..65535 or an address that is not
  // numeric; Unavailable naming address:port when it cannot be bound (in
  // use, or not an address of this host). `registry` is not owned and must
  // outlive the server.
  static Result<std::unique_ptr<MetricsServer>> Start(const Registry* registry,
                                                      MetricsServerOptions options);
  ~MetricsServer();  // Stop()
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // Closes the listening socket and every connection, and joins the thread.
  // Idempotent; not to be called concurrently with itself.
  void Stop();
  // The bound port (the one the system chose when options.port was 0).
  int port() const { return port_; }
  // "http://ADDRESS:PORT/metrics" (an IPv6 address in brackets).
  std::string url() const;

 private:
  MetricsServer(const Registry* registry, MetricsServerOptions options, int listen_fd, int stop_fd,
                int port);
  void Loop();

  const Registry* registry_;
  const MetricsServerOptions options_;
  int listen_fd_ = -1;
  int stop_fd_ = -1;  // eventfd: written by Stop() to wake the thread
  int port_ = 0;
  std::thread thread_;
};

}  // namespace cohort::metrics
