# free_ports N: prints N free TCP ports on 127.0.0.1, space-separated. They
# are bound, then released: a tiny race with other programs binding ports.
free_ports() {
  python3 -c '
import socket, sys
ss = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])
for s in ss: s.close()' "${1:-1}"
}
