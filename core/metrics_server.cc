#include "core/metrics_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "core/check.h"

namespace cohort::metrics {
namespace {

using Clock = std::chrono::steady_clock;

const char* Reason(int code) {
  switch (code) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    default:
      return "Error";
  }
}

HttpResponse Error(int code, const std::string& why) {
  HttpResponse r;
  r.code = code;
  r.body = std::string(Reason(code)) + ": " + why + "\n";
  return r;
}

// RFC 9110 token characters (methods, header names).
bool TokenChar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::strchr("!#$%&'*+-.^_`|~", c) != nullptr && c != '\0';
}

bool AllToken(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), TokenChar);
}

// Splits `head` into lines ending in "\r\n" (or a bare "\n").
std::vector<std::string_view> Lines(std::string_view head) {
  std::vector<std::string_view> lines;
  size_t at = 0;
  while (at < head.size()) {
    size_t nl = head.find('\n', at);
    if (nl == std::string_view::npos) nl = head.size();
    std::string_view line = head.substr(at, nl - at);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    lines.push_back(line);
    at = nl + 1;
  }
  return lines;
}

// Where the headers end (just past the blank line), or npos.
size_t HeadEnd(const std::string& in) {
  const size_t crlf = in.find("\r\n\r\n");
  const size_t lf = in.find("\n\n");
  if (crlf == std::string::npos && lf == std::string::npos) return std::string::npos;
  if (crlf == std::string::npos) return lf + 2;
  if (lf == std::string::npos) return crlf + 4;
  return std::min(crlf + 4, lf + 2);
}

void SetNonBlocking(int fd) { ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL, 0) | O_NONBLOCK); }

struct Conn {
  enum class State { kReading, kWriting, kLingering };
  int fd = -1;
  State state = State::kReading;
  std::string in;
  std::string out;
  size_t sent = 0;
  size_t drained = 0;
  Clock::time_point deadline;
};

}  // namespace

HttpResponse AnswerRequest(std::string_view head, const Registry& registry) {
  std::vector<std::string_view> lines = Lines(head);
  while (!lines.empty() && lines.back().empty()) lines.pop_back();
  if (lines.empty()) return Error(400, "empty request");
  // Request line: METHOD SP TARGET SP HTTP/1.x
  std::string_view rl = lines[0];
  const size_t sp1 = rl.find(' ');
  const size_t sp2 = sp1 == std::string_view::npos ? sp1 : rl.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || rl.find(' ', sp2 + 1) != std::string_view::npos) {
    return Error(400, "the request line is not 'METHOD TARGET HTTP/1.x'");
  }
  const std::string_view method = rl.substr(0, sp1);
  const std::string_view target = rl.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view version = rl.substr(sp2 + 1);
  if (!AllToken(method)) return Error(400, "bad method");
  if (version != "HTTP/1.1" && version != "HTTP/1.0")
    return Error(400, "only HTTP/1.0 and HTTP/1.1 are served");
  if (target.empty() || target[0] != '/')
    return Error(400, "the target must be a path starting with '/'");
  for (char c : target) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f)
      return Error(400, "control character in the target");
  }
  for (size_t i = 1; i < lines.size(); ++i) {
    const size_t colon = lines[i].find(':');
    if (colon == std::string_view::npos || !AllToken(lines[i].substr(0, colon))) {
      return Error(400, "header line " + std::to_string(i) + " is not 'Name: value'");
    }
  }
  const std::string_view path = target.substr(0, target.find('?'));
  if (path != "/metrics") return Error(404, "this server has only /metrics");
  if (method != "GET" && method != "HEAD") return Error(405, "/metrics takes GET or HEAD");
  HttpResponse r;
  r.content_type = kExpositionContentType;
  r.body = registry.Exposition();
  r.head = method == "HEAD";
  return r;
}

std::string SerializeResponse(const HttpResponse& r) {
  std::string out = "HTTP/1.1 " + std::to_string(r.code) + " " + Reason(r.code) + "\r\n";
  out += "Content-Type: " + r.content_type + "\r\n";
  out += "Content-Length: " + std::to_string(r.body.size()) + "\r\n";
  if (r.code == 405) out += "Allow: GET, HEAD\r\n";
  out += "Connection: close\r\n\r\n";
  if (!r.head) out += r.body;
  return out;
}

Result<std::unique_ptr<MetricsServer>> MetricsServer::Start(const Registry* registry,
                                                            MetricsServerOptions options) {
  COHORT_CHECK(registry != nullptr);
  if (options.port < 0 || options.port > kMaxPort) {
    return InvalidArgument("metrics port " + std::to_string(options.port) + " is outside 0.." +
                           std::to_string(kMaxPort));
  }
  if (options.max_connections < 1 || options.max_request_bytes < 16) {
    return InvalidArgument(
        "metrics server: max_connections must be >= 1 and max_request_bytes >= 16");
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags =
      AI_PASSIVE | AI_NUMERICSERV | AI_NUMERICHOST;  // no DNS: a lookup could hang start-up
  addrinfo* found = nullptr;
  const std::string port_text = std::to_string(options.port);
  const std::string host = options.address == "localhost" ? "127.0.0.1" : options.address;
  const int gai = ::getaddrinfo(host.c_str(), port_text.c_str(), &hints, &found);
  if (gai != 0 || found == nullptr) {
    return InvalidArgument(
        "metrics address '" + options.address +
        "' is not a numeric IPv4 or IPv6 address (e.g. 0.0.0.0, 127.0.0.1, ::): " +
        ::gai_strerror(gai));
  }
  const std::string where = options.address + ":" + port_text;
  int fd = ::socket(found->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    ::freeaddrinfo(found);
    return Unavailable("metrics server: socket(): " + std::string(std::strerror(errno)));
  }
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one,
               sizeof(one));  // restart within TIME_WAIT; still one listener
  const int bound = ::bind(fd, found->ai_addr, found->ai_addrlen);
  const int bind_errno = errno;
  ::freeaddrinfo(found);
  if (bound != 0 || ::listen(fd, kListenBacklog) != 0) {
    const int e = bound != 0 ? bind_errno : errno;
    ::close(fd);
    return Unavailable("cannot serve metrics on " + where + ": " + std::strerror(e) +
                       (e == EADDRINUSE
                            ? " (another process has the port; pick another or 0 for any free one)"
                            : ""));
  }
  SetNonBlocking(fd);
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  const int port = ss.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port)
                                            : ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  const int stop_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (stop_fd < 0) {
    ::close(fd);
    return Unavailable("metrics server: eventfd(): " + std::string(std::strerror(errno)));
  }
  auto server = std::unique_ptr<MetricsServer>(
      new MetricsServer(registry, std::move(options), fd, stop_fd, port));
  server->thread_ = std::thread([s = server.get()] { s->Loop(); });
  return server;
}

MetricsServer::MetricsServer(const Registry* registry, MetricsServerOptions options, int listen_fd,
                             int stop_fd, int port)
    : registry_(registry),
      options_(std::move(options)),
      listen_fd_(listen_fd),
      stop_fd_(stop_fd),
      port_(port) {}

MetricsServer::~MetricsServer() { Stop(); }

void MetricsServer::Stop() {
  if (!thread_.joinable()) return;
  const uint64_t one = 1;
  ssize_t w = ::write(stop_fd_, &one, sizeof(one));
  (void)w;
  thread_.join();
  ::close(listen_fd_);
  ::close(stop_fd_);
  listen_fd_ = stop_fd_ = -1;
}

std::string MetricsServer::url() const {
  const bool v6 = options_.address.find(':') != std::string::npos;
  return "http://" + (v6 ? "[" + options_.address + "]" : options_.address) + ":" +
         std::to_string(port_) + "/metrics";
}

void MetricsServer::Loop() {
  std::vector<Conn> conns;
  std::vector<pollfd> fds;
  char buf[4096];
  for (;;) {
    const Clock::time_point now = Clock::now();
    int timeout_ms = -1;
    for (const Conn& c : conns) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(c.deadline - now).count() + 1;
      const int l = static_cast<int>(std::max<int64_t>(0, left));
      timeout_ms = timeout_ms < 0 ? l : std::min(timeout_ms, l);
    }
    fds.clear();
    fds.push_back({stop_fd_, POLLIN, 0});
    const bool accepting = static_cast<int>(conns.size()) < options_.max_connections;
    fds.push_back({accepting ? listen_fd_ : -1, POLLIN, 0});
    for (const Conn& c : conns) {
      fds.push_back(
          {c.fd, static_cast<short>(c.state == Conn::State::kWriting ? POLLOUT : POLLIN), 0});
    }
    const int n = ::poll(fds.data(), fds.size(), timeout_ms);
    if (n < 0 && errno != EINTR) break;
    if (fds[0].revents != 0) break;  // Stop()
    // Connections first (their pollfds are in `conns` order), then new ones.
    const Clock::time_point t = Clock::now();
    for (size_t i = 0; i < conns.size(); ++i) {
      Conn& c = conns[i];
      const short ev = n > 0 ? fds[i + 2].revents : 0;
      auto respond = [&](const HttpResponse& r) {
        c.out = SerializeResponse(r);
        c.sent = 0;
        c.state = Conn::State::kWriting;
        c.deadline = t + options_.write_timeout;
      };
      if (c.state == Conn::State::kReading && (ev & (POLLIN | POLLHUP | POLLERR))) {
        const size_t room =
            options_.max_request_bytes + 1 - std::min(c.in.size(), options_.max_request_bytes);
        const ssize_t got = ::recv(c.fd, buf, std::min(sizeof(buf), room), 0);
        if (got > 0) {
          c.in.append(buf, static_cast<size_t>(got));
          const size_t end = HeadEnd(c.in);
          if (end != std::string::npos && end <= options_.max_request_bytes) {
            respond(AnswerRequest(std::string_view(c.in).substr(0, end), *registry_));
          } else if (c.in.size() > options_.max_request_bytes) {
            respond(Error(400,
                          "request over " + std::to_string(options_.max_request_bytes) + " bytes"));
          }
        } else if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
          c.state = Conn::State::kLingering;  // the client left: close below
          c.deadline = t;
        }
      } else if (c.state == Conn::State::kWriting && (ev & (POLLOUT | POLLHUP | POLLERR))) {
        const ssize_t put =
            ::send(c.fd, c.out.data() + c.sent, c.out.size() - c.sent, MSG_NOSIGNAL);
        if (put > 0) c.sent += static_cast<size_t>(put);
        if (c.sent == c.out.size() || (put < 0 && errno != EAGAIN && errno != EINTR)) {
          ::shutdown(c.fd, SHUT_WR);
          c.state = Conn::State::kLingering;
          c.deadline = t + kLingerTimeout;
        }
      } else if (c.state == Conn::State::kLingering && (ev & (POLLIN | POLLHUP | POLLERR))) {
        const ssize_t got = ::recv(c.fd, buf, sizeof(buf), 0);
        if (got > 0) c.drained += static_cast<size_t>(got);
        if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR) ||
            c.drained > kMaxLingerBytes) {
          c.deadline = t;  // done: close below
        }
      }
      if (t >= c.deadline) {
        if (c.state == Conn::State::kReading) {
          respond(Error(408, "no complete request within " +
                                 std::to_string(options_.read_timeout.count()) + " ms"));
        } else {
          ::close(c.fd);
          c.fd = -1;
        }
      }
    }
    conns.erase(std::remove_if(conns.begin(), conns.end(), [](const Conn& c) { return c.fd < 0; }),
                conns.end());
    while (static_cast<int>(conns.size()) < options_.max_connections) {
      const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0)
        break;  // EAGAIN: none waiting (errors such as ECONNABORTED: try again next round)
      Conn c;
      c.fd = fd;
      c.deadline = Clock::now() + options_.read_timeout;
      conns.push_back(std::move(c));
    }
  }
  for (Conn& c : conns) ::close(c.fd);
}

}  // namespace cohort::metrics
