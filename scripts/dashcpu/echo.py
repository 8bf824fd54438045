# UDP echo server on port 7000 (sink), bounded lifetime
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 7000))
s.settimeout(1)
end = time.time() + float(sys.argv[1])
while time.time() < end:
    try:
        d, a = s.recvfrom(2048)
        s.sendto(d, a)
    except socket.timeout:
        pass
