# N UDP flows from gen to sink:7000, one datagram per flow every 2 s, bounded lifetime
import socket, sys, time, select
dst, n, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
socks = []
for i in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setblocking(False)
    socks.append(s)
end = time.time() + secs
while time.time() < end:
    t0 = time.time()
    for s in socks:
        try:
            s.sendto(b"x" * 64, (dst, 7000))
        except BlockingIOError:
            pass
    # drain replies
    t1 = time.time()
    while time.time() - t1 < 0.5:
        r, _, _ = select.select(socks[:1000], [], [], 0.05)
        for s in socks:
            try:
                while True:
                    s.recv(2048)
            except (BlockingIOError, OSError):
                pass
        break
    time.sleep(max(0, 2 - (time.time() - t0)))
