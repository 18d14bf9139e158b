// The metrics registry, its Prometheus text exposition (golden text), and the
// HTTP endpoint over real sockets on 127.0.0.1.
#include "core/metrics.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "core/metrics_server.h"

namespace cohort::metrics {
namespace {

TEST(Metrics, ExpositionGolden) {
  Registry r;
  r.AddCounter("app_requests_total", "Requests served",
               {{"method", "GET"}, {"path", "/a\"b\\c\nd"}})
      ->Inc(3);
  r.AddCounter("app_requests_total", "ignored: first help wins",
               {{"method", "POST"}, {"path", "/"}})
      ->Inc(0.5);
  r.AddGauge("app_temperature", "Line one\nline two with \\ backslash")->Set(-2.25);
  Summary* s = r.AddSummary("app_latency_seconds", "Latency", {{"op", "read"}});
  s->Observe(0.5);
  s->Observe(1.0);
  r.AddCollector([](MetricsSink& out) {
    out.GaugeSample("app_breaker_state", "Breaker per worker (0 closed, 1 open)",
                    {{"worker", "w1"}}, 1);
    out.GaugeSample("app_breaker_state", "Breaker per worker (0 closed, 1 open)",
                    {{"worker", "w0"}}, 0);
    out.CounterSample("app_requests_total", "from a collector", {{"method", "PUT"}, {"path", "/x"}},
                      7);
  });
  const std::string expected =
      "# HELP app_breaker_state Breaker per worker (0 closed, 1 open)\n"
      "# TYPE app_breaker_state gauge\n"
      "app_breaker_state{worker=\"w1\"} 1\n"
      "app_breaker_state{worker=\"w0\"} 0\n"
      "# HELP app_latency_seconds Latency\n"
      "# TYPE app_latency_seconds summary\n"
      "app_latency_seconds_sum{op=\"read\"} 1.5\n"
      "app_latency_seconds_count{op=\"read\"} 2\n"
      "# HELP app_requests_total Requests served\n"
      "# TYPE app_requests_total counter\n"
      "app_requests_total{method=\"GET\",path=\"/a\\\"b\\\\c\\nd\"} 3\n"
      "app_requests_total{method=\"POST\",path=\"/\"} 0.5\n"
      "app_requests_total{method=\"PUT\",path=\"/x\"} 7\n"
      "# HELP app_temperature Line one\\nline two with \\\\ backslash\n"
      "# TYPE app_temperature gauge\n"
      "app_temperature -2.25\n";
  EXPECT_EQ(r.Exposition(), expected);
}

TEST(Metrics, EmptyRegistryIsEmptyText) {
  Registry r;
  EXPECT_EQ(r.Exposition(), "");
}

TEST(Metrics, FormatValue) {
  EXPECT_EQ(FormatValue(0), "0");
  EXPECT_EQ(FormatValue(-0.0), "0");
  EXPECT_EQ(FormatValue(42), "42");
  EXPECT_EQ(FormatValue(-7), "-7");
  EXPECT_EQ(FormatValue(9007199254740992.0), "9007199254740992");
  EXPECT_EQ(FormatValue(1e300), "1.0000000000000001e+300");
  EXPECT_EQ(FormatValue(0.1), "0.10000000000000001");
  EXPECT_EQ(FormatValue(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(FormatValue(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(FormatValue(std::nan("")), "NaN");
}

TEST(Metrics, Names) {
  EXPECT_TRUE(ValidMetricName("cohort_train_steps_total"));
  EXPECT_TRUE(ValidMetricName("job:rate5m"));
  EXPECT_FALSE(ValidMetricName("2xx"));
  EXPECT_FALSE(ValidMetricName("a-b"));
  EXPECT_FALSE(ValidMetricName(""));
  EXPECT_TRUE(ValidLabelName("method"));
  EXPECT_FALSE(ValidLabelName("__name__"));
  EXPECT_FALSE(ValidLabelName("a:b"));
  EXPECT_FALSE(ValidLabelName("0a"));
}

TEST(Metrics, SameNameAndLabelsIsOneSeries) {
  Registry r;
  Counter* a = r.AddCounter("x_total", "x", {{"k", "v"}});
  Counter* b = r.AddCounter("x_total", "x", {{"k", "v"}});
  Counter* c = r.AddCounter("x_total", "x", {{"k", "w"}});
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
}

TEST(MetricsDeathTest, OneNameTwoTypesIsABug) {
  Registry r;
  r.AddCounter("x_total", "x");
  EXPECT_DEATH(r.AddGauge("x_total", "x"), "registered as a counter and a gauge");
  EXPECT_DEATH(r.AddGauge("bad-name", "x"), "bad metric name");
  EXPECT_DEATH(r.AddCounter("y_total", "y")->Inc(-1), "only grows");
}

TEST(Metrics, ConcurrentUpdatesAreExact) {
  Registry r;
  Counter* c = r.AddCounter("n_total", "n");
  Summary* s = r.AddSummary("t_seconds", "t");
  constexpr int kThreads = 4, kEach = 20000;
  std::vector<std::thread> ts;
  std::atomic<bool> stop{false};
  std::thread scraper([&] {
    while (!stop.load()) (void)r.Exposition();  // scrapes race the writers
  });
  for (int i = 0; i < kThreads; ++i) {
    ts.emplace_back([&] {
      for (int k = 0; k < kEach; ++k) {
        c->Inc();
        s->Observe(2);
      }
    });
  }
  for (auto& t : ts) t.join();
  stop = true;
  scraper.join();
  EXPECT_EQ(c->value(), kThreads * kEach);
  EXPECT_EQ(s->count(), static_cast<uint64_t>(kThreads * kEach));
  EXPECT_EQ(s->sum(), 2.0 * kThreads * kEach);
}

// ---- HTTP --------------------------------------------------------------------------

TEST(MetricsHttp, AnswerRequest) {
  Registry r;
  r.AddGauge("g", "g")->Set(1);
  HttpResponse ok = AnswerRequest("GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n", r);
  EXPECT_EQ(ok.code, 200);
  EXPECT_EQ(ok.content_type, "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(ok.body, r.Exposition());
  EXPECT_EQ(AnswerRequest("GET /metrics?x=1 HTTP/1.0\n\n", r).code, 200);
  HttpResponse head = AnswerRequest("HEAD /metrics HTTP/1.1\r\n\r\n", r);
  EXPECT_EQ(head.code, 200);
  EXPECT_TRUE(head.head);
  EXPECT_EQ(SerializeResponse(head).find("# TYPE"), std::string::npos);
  EXPECT_EQ(AnswerRequest("GET / HTTP/1.1\r\n\r\n", r).code, 404);
  EXPECT_EQ(AnswerRequest("GET /metricsx HTTP/1.1\r\n\r\n", r).code, 404);
  EXPECT_EQ(AnswerRequest("POST /metrics HTTP/1.1\r\n\r\n", r).code, 405);
  EXPECT_NE(SerializeResponse(AnswerRequest("POST /metrics HTTP/1.1\r\n\r\n", r))
                .find("Allow: GET, HEAD\r\n"),
            std::string::npos);
  for (const char* bad :
       {"\r\n\r\n", "GET /metrics\r\n\r\n", "GET  /metrics HTTP/1.1\r\n\r\n",
        "GET /metrics HTTP/2.0\r\n\r\n", "GET metrics HTTP/1.1\r\n\r\n",
        "G(T /metrics HTTP/1.1\r\n\r\n", "GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n",
        "GET /metrics HTTP/1.1\r\n: empty name\r\n\r\n", "GET /met\x01rics HTTP/1.1\r\n\r\n"}) {
    EXPECT_EQ(AnswerRequest(bad, r).code, 400) << bad;
  }
}

// A blocking client socket to 127.0.0.1:port with a receive timeout, so a
// broken server fails the test instead of hanging it.
int Connect(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  EXPECT_GE(fd, 0);
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  return fd;
}

void SendAll(int fd, const std::string& s) {
  size_t at = 0;
  while (at < s.size()) {
    const ssize_t n = ::send(fd, s.data() + at, s.size() - at, MSG_NOSIGNAL);
    if (n <= 0) return;  // the server may close early (oversized request)
    at += static_cast<size_t>(n);
  }
}

// Everything the server sends until it closes.
std::string ReadAll(int fd) {
  std::string out;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

std::string Exchange(int port, const std::string& request) {
  const int fd = Connect(port);
  SendAll(fd, request);
  std::string out = ReadAll(fd);
  ::close(fd);
  return out;
}

std::string StatusLine(const std::string& response) {
  return response.substr(0, response.find("\r\n"));
}

std::string Body(const std::string& response) {
  const size_t at = response.find("\r\n\r\n");
  return at == std::string::npos ? "" : response.substr(at + 4);
}

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    steps_ = registry_.AddCounter("steps_total", "Steps");
    MetricsServerOptions o;
    o.address = "127.0.0.1";
    o.port = 0;
    o.max_request_bytes = 1024;
    o.read_timeout = std::chrono::milliseconds(300);
    auto s = MetricsServer::Start(&registry_, o);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    server_ = std::move(s).value();
    port_ = server_->port();
  }
  Registry registry_;
  Counter* steps_ = nullptr;
  std::unique_ptr<MetricsServer> server_;
  int port_ = 0;
};

TEST_F(ServerTest, EphemeralPortAndUrl) {
  EXPECT_GT(port_, 0);
  EXPECT_EQ(server_->url(), "http://127.0.0.1:" + std::to_string(port_) + "/metrics");
}

TEST_F(ServerTest, GetMetrics) {
  steps_->Inc(5);
  const std::string resp = Exchange(port_, "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n");
  EXPECT_EQ(StatusLine(resp), "HTTP/1.1 200 OK");
  EXPECT_NE(resp.find("\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"),
            std::string::npos);
  EXPECT_NE(resp.find("\r\nConnection: close\r\n"), std::string::npos);
  const std::string body = Body(resp);
  EXPECT_NE(resp.find("\r\nContent-Length: " + std::to_string(body.size()) + "\r\n"),
            std::string::npos);
  EXPECT_EQ(body, "# HELP steps_total Steps\n# TYPE steps_total counter\nsteps_total 5\n");
  steps_->Inc();
  EXPECT_EQ(Body(Exchange(port_, "GET /metrics HTTP/1.0\r\n\r\n")),
            "# HELP steps_total Steps\n# TYPE steps_total counter\nsteps_total 6\n");
}

TEST_F(ServerTest, RequestInPieces) {
  const int fd = Connect(port_);
  for (const char* piece : {"GET /met", "rics HTTP/1.1\r\n", "Host: x\r\n", "\r\n"}) {
    SendAll(fd, piece);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(StatusLine(ReadAll(fd)), "HTTP/1.1 200 OK");
  ::close(fd);
}

TEST_F(ServerTest, OtherPathIs404) {
  EXPECT_EQ(StatusLine(Exchange(port_, "GET /other HTTP/1.1\r\n\r\n")), "HTTP/1.1 404 Not Found");
}

TEST_F(ServerTest, MalformedIs400AndClosed) {
  const std::string resp =
      Exchange(port_, "HELLO\r\n\r\n");  // ReadAll returns only once the server closed
  EXPECT_EQ(StatusLine(resp), "HTTP/1.1 400 Bad Request");
  EXPECT_NE(resp.find("\r\nConnection: close\r\n"), std::string::npos);
}

TEST_F(ServerTest, OversizedIs400) {
  // Headers that never end, past the 1024-byte bound: answered without waiting for the end.
  std::string big = "GET /metrics HTTP/1.1\r\n";
  while (big.size() < 4000) big += "X-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
  const std::string resp = Exchange(port_, big);
  EXPECT_EQ(StatusLine(resp), "HTTP/1.1 400 Bad Request");
  EXPECT_NE(Body(resp).find("over 1024 bytes"), std::string::npos);
}

TEST_F(ServerTest, SilentClientTimesOutWith408) {
  const int fd = Connect(port_);
  SendAll(fd, "GET /metrics HTTP/1.1\r\n");  // never finishes its headers
  EXPECT_EQ(StatusLine(ReadAll(fd)), "HTTP/1.1 408 Request Timeout");
  ::close(fd);
}

TEST_F(ServerTest, ConcurrentScrapesWhileAClientStalls) {
  const int stalled = Connect(port_);  // holds a connection open, sends nothing
  constexpr int kThreads = 8, kEach = 25;
  std::atomic<int> ok{0};
  std::vector<std::thread> ts;
  for (int i = 0; i < kThreads; ++i) {
    ts.emplace_back([&] {
      for (int k = 0; k < kEach; ++k) {
        steps_->Inc();
        const std::string resp = Exchange(port_, "GET /metrics HTTP/1.1\r\n\r\n");
        if (StatusLine(resp) == "HTTP/1.1 200 OK" &&
            Body(resp).find("steps_total ") != std::string::npos)
          ++ok;
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(ok.load(), kThreads * kEach);
  ::close(stalled);
}

TEST_F(ServerTest, PortInUseIsUnavailable) {
  MetricsServerOptions o;
  o.address = "127.0.0.1";
  o.port = port_;
  auto second = MetricsServer::Start(&registry_, o);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(second.status().message().find("127.0.0.1:" + std::to_string(port_)),
            std::string::npos);
  EXPECT_NE(second.status().message().find("in use"), std::string::npos);
}

TEST_F(ServerTest, StopClosesThePort) {
  server_->Stop();
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port_));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_NE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  ::close(fd);
  server_->Stop();  // idempotent
}

TEST(MetricsServerStart, BadOptions) {
  Registry r;
  MetricsServerOptions o;
  o.port = 70000;
  auto s = MetricsServer::Start(&r, o);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.status().message().find("70000"), std::string::npos);
  o.port = 0;
  o.address = "not an address..";
  s = MetricsServer::Start(&r, o);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.status().message().find("not an address.."), std::string::npos);
}

}  // namespace
}  // namespace cohort::metrics
