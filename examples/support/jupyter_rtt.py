"""The peer of examples/sessionbench.rs: jupyter_client talking to a kernel directly.

Starts the kernel (timing the cold start to its first kernel_info reply), then runs `1+1`
N times, each timed from the execute request to the kernel's idle status on IOPub (the
same end victor waits for). Prints one JSON object: {"start_ms", "rtt_ms": [...]}.
"""
import json
import sys
import time

from jupyter_client.manager import start_new_kernel

runs = int(sys.argv[1]) if len(sys.argv) > 1 else 200
started = time.perf_counter()
manager, client = start_new_kernel(kernel_name="python3")
start_ms = (time.perf_counter() - started) * 1000
try:
    rtt = []
    for i in range(runs + 10):
        begun = time.perf_counter()
        reply = client.execute_interactive("1+1", timeout=30, output_hook=lambda msg: None)
        elapsed = (time.perf_counter() - begun) * 1000
        assert reply["content"]["status"] == "ok", reply
        if i >= 10:
            rtt.append(elapsed)
    print(json.dumps({"start_ms": start_ms, "rtt_ms": rtt}))
finally:
    client.stop_channels()
    manager.shutdown_kernel(now=True)
