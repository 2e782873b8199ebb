"""The peer of examples/sessionbench.rs: jupyter_client talking to a kernel directly.

Starts the kernel (timing the cold start to its first kernel_info reply), then runs `1+1`
N times, each timed from the execute request to the kernel's idle status on IOPub (the
same end victor waits for), then a loop printing LINES lines, read until idle. Prints one
JSON object: {"start_ms", "rtt_ms": [...], "flood_ms"}. Arguments: N LINES.
"""
import json
import sys
import time

from jupyter_client.manager import start_new_kernel

runs = int(sys.argv[1]) if len(sys.argv) > 1 else 200
lines = int(sys.argv[2]) if len(sys.argv) > 2 else 200000
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
    # Output throughput: the same print loop as victor's, read as stream messages until idle.
    begun = time.perf_counter()
    reply = client.execute_interactive(
        f"for i in range({lines}): print(i)", timeout=600, output_hook=lambda msg: None
    )
    flood_ms = (time.perf_counter() - begun) * 1000
    assert reply["content"]["status"] == "ok", reply
    print(json.dumps({"start_ms": start_ms, "rtt_ms": rtt, "flood_ms": flood_ms}))
finally:
    client.stop_channels()
    manager.shutdown_kernel(now=True)
