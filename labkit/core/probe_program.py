"""The batch probe program: TCP, UDP and ICMP echo, many targets in one exec.

It runs with the source's python3 (shipped as source, stdlib only).
"""

# One job per target: [kind ("tcp" | "udp" | "icmp"), address, port, timeout, payload, count].
# Prints one JSON result per job, in order. Sockets queue the ICMP error that
# failed them (IP_RECVERR): its type/code tells a policy denial from the rest.
BATCH_PROBE = r"""
import ctypes, errno, json, os, random, select, socket, struct, sys, threading, time
from concurrent.futures import ThreadPoolExecutor
IP_RECVERR = getattr(socket, "IP_RECVERR", 11)
RESEND = 0.2

def icmp_error(s):
    try:
        _, ancillary, _, _ = s.recvmsg(1, 512, socket.MSG_ERRQUEUE | socket.MSG_DONTWAIT)
    except OSError:
        return None, ""
    for _, _, data in ancillary:
        _, origin, kind, code = struct.unpack_from("=IBBB", data)
        if origin == 2:  # SO_EE_ORIGIN_ICMP
            return [kind, code], socket.inet_ntoa(data[20:24])
    return None, ""

def dial(job):
    kind, host, port, timeout, payload = job[:5]
    out = {"ok": False, "error": "", "reply": "", "local": "", "icmp": None, "by": ""}
    stream = kind == "tcp"
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if stream else socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_IP, IP_RECVERR, 1)
    s.settimeout(timeout)
    start, phase = time.perf_counter(), "connect"
    try:
        s.connect((host, port))
        phase = "reply"  # said in the error: a slow listener vs. a path that drops
        out["local"] = "%s:%d" % s.getsockname()
        if not stream:
            s.send((payload or "ping").encode())
        elif payload:
            s.sendall(payload.encode())
        if payload or not stream:
            out["reply"] = s.recv(4096).decode(errors="replace")
        out["ok"] = True
    except Exception as exc:
        name = errno.errorcode.get(getattr(exc, "errno", None) or 0, "")
        out["error"] = type(exc).__name__ + (" " + name if name else "") + (": " + str(exc) if str(exc) else "") + " (" + phase + ")"
        out["icmp"], out["by"] = icmp_error(s)
    out["ms"] = (time.perf_counter() - start) * 1000
    s.close()
    return out

def checksum(data):
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    total = (total >> 16) + (total & 0xFFFF)
    return ~(total + (total >> 16)) & 0xFFFF

def echo_all(jobs):
    # One raw socket for every echo, matched by (id, sequence): a job sends its count
    # of echoes (ok when any is answered, as ping); unanswered echoes are sent again
    # every RESEND s until the timeout (a burst may lose some).
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    s.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33), 1 << 22)
    ident = random.getrandbits(16)  # one per source: pods of one node probe at once
    results = [{"ok": False, "error": "timed out", "reply": "", "local": "", "icmp": None, "by": "", "ms": 0.0, "sent": 0, "received": 0} for _ in jobs]
    echoes = [j for j, job in enumerate(jobs) for _ in range(max(1, int(job[5]) if len(job) > 5 else 1))]
    sent_at = {}
    def send(seq):
        header = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
        try:
            s.sendto(struct.pack("!BBHHH", 8, 0, checksum(header + b"labkit"), ident, seq) + b"labkit", (jobs[echoes[seq]][1], 0))
        except OSError as exc:
            results[echoes[seq]]["error"] = str(exc)
            return
        if seq not in sent_at:
            sent_at[seq] = time.perf_counter()
            results[echoes[seq]]["sent"] += 1
    start = time.perf_counter()
    deadline = start + max([job[3] for job in jobs] + [0.1])
    waiting, next_send = set(range(len(echoes))), start
    while waiting and time.perf_counter() < deadline:
        if time.perf_counter() >= next_send:
            for seq in sorted(waiting):
                send(seq)
            next_send = time.perf_counter() + RESEND
        ready, _, _ = select.select([s], [], [], 0.01)
        if not ready:
            continue
        packet, (sender, _) = s.recvfrom(2048)
        inner = packet[(packet[0] & 0x0F) * 4:]
        kind, code = inner[0], inner[1]
        if kind == 0:
            got_id, seq = struct.unpack_from("!HH", inner, 4)
        elif kind in (3, 11) and len(inner) >= 36:
            quoted = inner[8 + (inner[8] & 0x0F) * 4:]
            got_id, seq = struct.unpack_from("!HH", quoted, 4)
        else:
            continue
        if got_id != ident or seq not in waiting:
            continue
        result = results[echoes[seq]]
        if kind == 0 and sender != jobs[echoes[seq]][1]:
            continue
        waiting.discard(seq)
        ms = (time.perf_counter() - sent_at[seq]) * 1000
        if kind == 0:
            result["received"] += 1
            if not result["ok"]:  # the first answer's time, as ping's first line
                result.update(ok=True, error="", reply=sender, ms=ms, icmp=None, by="")
        elif not result["ok"]:
            result.update(error="ICMP %d/%d from %s" % (kind, code, sender), icmp=[kind, code], by=sender, ms=ms)
    return results

def run_jobs(jobs):
    results = [None] * len(jobs)
    echo = [i for i, job in enumerate(jobs) if job[0] == "icmp"]
    for index, result in zip(echo, echo_all([jobs[i] for i in echo]) if echo else []):
        results[index] = result
    dials = [i for i, job in enumerate(jobs) if job[0] != "icmp"]
    with ThreadPoolExecutor(min(16, max(1, len(dials)))) as pool:
        for index, result in zip(dials, pool.map(dial, [jobs[i] for i in dials])):
            results[index] = result
    return results

def in_netns(name, jobs, out):
    # A thread's network namespace is its own: enter the pod's, then probe from it
    # (the sockets and the dialling threads started here all belong to it).
    if name:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open("/var/run/netns/" + name, os.O_RDONLY)
        if libc.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET
            raise OSError(ctypes.get_errno(), "setns " + name)
        os.close(fd)
    out[name] = run_jobs(jobs)

spec = json.loads(sys.argv[1])
if isinstance(spec, list):
    print(json.dumps(run_jobs(spec)))
else:  # {netns name ("" for the node itself): jobs}: many sources of one node at once
    out = {}
    threads = [threading.Thread(target=in_netns, args=(n, j, out)) for n, j in spec.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(json.dumps(out))
"""
