"""Sustained throughput and energy per FLOP on the GPU: our dense paged
attention on the last chunk, SDPA flash on the same inputs, and a bf16 GEMM
(the tensor-core ceiling), each run back to back for a few seconds while NVML
reads the energy counter and samples clocks and throttle reasons.

Under the board's power cap, throughput = cap / (energy per FLOP): this says
whether a kernel is limited by its schedule or by the joules it spends.

    python3 bench/power_probe.py --configs 8:1024:131072,8:1024:32768 --out probe.json
"""

import argparse
import ctypes
import datetime
import json
import threading
import time
from pathlib import Path

import torch

from bench import BLOCK, D, G, PAGE, Hq, Setup, causal_flops, git_commit, timed
from compact_attention import Runtime

# nvmlClocksEventReasons bits (nvml.h): the power cap, and any slowdown that
# is not it (hardware slowdown, software / hardware thermal, power brake).
SW_POWER_CAP = 0x4
OTHER_SLOWDOWN = 0x8 | 0x20 | 0x40 | 0x80
NVML_CLOCK_SM = 1


class Nvml:
    """The few NVML calls used here, through ctypes (no pynvml needed)."""

    def __init__(self, device):
        self.lib = ctypes.CDLL("libnvidia-ml.so.1")
        self._check(self.lib.nvmlInit_v2(), "nvmlInit_v2")
        # NVML numbers GPUs in PCI order and ignores CUDA_VISIBLE_DEVICES:
        # find torch's device by its PCI address.
        props = torch.cuda.get_device_properties(device)
        bus_id = f"{props.pci_domain_id:08X}:{props.pci_bus_id:02X}:{props.pci_device_id:02X}.0"
        self.handle = ctypes.c_void_p()
        self._check(self.lib.nvmlDeviceGetHandleByPciBusId_v2(bus_id.encode(),
                                                              ctypes.byref(self.handle)),
                    f"nvmlDeviceGetHandleByPciBusId_v2({bus_id})")

    def close(self):
        self.lib.nvmlShutdown()

    @staticmethod
    def _check(rc, what):
        if rc != 0:
            raise RuntimeError(f"{what} failed with NVML error {rc}")

    def energy_mj(self):
        value = ctypes.c_ulonglong()
        self._check(self.lib.nvmlDeviceGetTotalEnergyConsumption(self.handle, ctypes.byref(value)),
                    "nvmlDeviceGetTotalEnergyConsumption")
        return value.value

    def sm_clock_mhz(self):
        value = ctypes.c_uint()
        self._check(self.lib.nvmlDeviceGetClockInfo(self.handle, NVML_CLOCK_SM,
                                                    ctypes.byref(value)), "nvmlDeviceGetClockInfo")
        return value.value

    def clock_limits(self):
        value = ctypes.c_ulonglong()
        self._check(self.lib.nvmlDeviceGetCurrentClocksEventReasons(self.handle,
                                                                    ctypes.byref(value)),
                    "nvmlDeviceGetCurrentClocksEventReasons")
        return value.value

    def power_w(self):
        value = ctypes.c_uint()
        self._check(self.lib.nvmlDeviceGetPowerUsage(self.handle, ctypes.byref(value)),
                    "nvmlDeviceGetPowerUsage")
        return value.value / 1000.0


def triton_version():
    try:
        return __import__("triton").__version__
    except ImportError:
        return None


def sustained(nvml, fn, flops, seconds):
    """Runs `fn` back to back for about `seconds` after a one-second warm-up;
    returns throughput, mean power, energy per FLOP and the clock samples."""
    end = time.time() + 1.0
    while time.time() < end:
        fn()
        torch.cuda.synchronize()
    # Calls per batch: about 50 ms of work between host checks.
    start_ev, end_ev = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start_ev.record()
    fn()
    end_ev.record()
    end_ev.synchronize()
    per_batch = max(1, int(50.0 / start_ev.elapsed_time(end_ev)))
    samples, stop = [], threading.Event()

    def sample():
        while not stop.is_set():
            samples.append((nvml.sm_clock_mhz(), nvml.clock_limits(), nvml.power_w()))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    torch.cuda.synchronize()
    e0 = nvml.energy_mj()
    sampler.start()
    start_ev.record()
    calls, deadline = 0, time.time() + seconds
    while time.time() < deadline:
        for _ in range(per_batch):
            fn()
        calls += per_batch
        torch.cuda.synchronize()
    end_ev.record()
    end_ev.synchronize()
    e1 = nvml.energy_mj()
    stop.set()
    sampler.join()
    ms = start_ev.elapsed_time(end_ev)
    joules = (e1 - e0) / 1000.0
    clocks = [c for c, _, _ in samples]
    capped = sum(1 for _, r, _ in samples if r & SW_POWER_CAP)
    slowed = sum(1 for _, r, _ in samples if r & OTHER_SLOWDOWN)
    powers = [w for _, _, w in samples]
    return {
        "calls": calls, "ms_per_call": ms / calls,
        "tflops": flops * calls / ms / 1e9,
        "watts": joules / (ms / 1000.0),
        "pj_per_flop": joules / (flops * calls) * 1e12,
        "sm_mhz_mean": sum(clocks) / max(1, len(clocks)),
        "sm_mhz_min": min(clocks, default=0), "sm_mhz_max": max(clocks, default=0),
        "watts_sampled_max": max(powers, default=0.0),
        "power_capped_samples": capped, "other_slowdown_samples": slowed,
        "samples": len(samples),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--configs", default="8:1024:131072,8:1024:32768")
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--methods", default="compact_dense,sdpa_flash,gemm")
    ap.add_argument("--out", default="power-probe.json")
    args = ap.parse_args()
    methods = args.methods.split(",")
    nvml = Nvml(torch.cuda.current_device())
    rt = Runtime(Hq, Hq // G, D, PAGE, BLOCK, "bfloat16", "nhd")
    rows = []
    if "gemm" in methods:
        n = 8192
        a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
        b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
        c = torch.empty(n, n, device="cuda", dtype=torch.bfloat16)
        row = sustained(nvml, lambda: torch.mm(a, b, out=c), 2.0 * n ** 3, args.seconds)
        rows.append({"method": "gemm_bf16", "shape": [n, n, n], **row})
        print(rows[-1], flush=True)
        del a, b, c
    for spec in args.configs.split(","):
        B, C, L = map(int, spec.split(":"))
        st = Setup(rt, B, L, C, seed=B * 1000 + L)
        flops = causal_flops(B, C, L)
        if "compact_dense" in methods:
            out = torch.empty_like(st.q)
            table = torch.empty((B, Hq // G, st.Kb), dtype=torch.int32, device="cuda")
            counts = torch.empty((B, Hq // G), dtype=torch.int32, device="cuda")
            rt.dense_table(st.lens_full, table, counts, G, chunk_len=C)

            def ours():
                rt.paged_attention(st.q, st.cache.k, st.cache.v, st.cache.page_table,
                                   st.lens_full, table, counts, out, None, G)

            # As bench.py times it (median of 10 after 3 warm-up calls), then
            # sustained.
            burst = flops / timed(ours) / 1e9
            row = sustained(nvml, ours, flops, args.seconds)
            rows.append({"method": "compact_dense", "B": B, "C": C, "L": L,
                         "burst_tflops": burst, **row})
            print(rows[-1], flush=True)
        if "sdpa_flash" in methods:
            qt = st.q.transpose(1, 2)
            kt, vt = st.k_all.transpose(1, 2).contiguous(), st.v_all.transpose(1, 2).contiguous()
            row = sustained(nvml, lambda: torch.ops.aten._scaled_dot_product_flash_attention(
                qt, kt, vt, 0.0, True), flops, args.seconds)
            rows.append({"method": "sdpa_flash", "B": B, "C": C, "L": L, **row})
            print(rows[-1], flush=True)
            del kt, vt
        del st
        torch.cuda.empty_cache()
    result = {
        "device": torch.cuda.get_device_name(), "commit": git_commit(),
        "date": datetime.date.today().isoformat(),
        "versions": {"torch": torch.__version__, "cuda": torch.version.cuda,
                     "triton": triton_version()},
        "workload": {"name": "planted_retrieval (last chunk, dense), bf16 GEMM",
                     "seconds": args.seconds},
        "rows": rows,
    }
    Path(args.out).write_text(json.dumps(result, indent=2))
    nvml.close()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
