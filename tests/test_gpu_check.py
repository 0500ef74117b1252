"""benchmarks/gpu_check.py --smoke: the GPU check's every part on the CPU at tiny sizes, so that the script
cannot rot between the rare runs on a GPU (what needs one is skipped there: the GPU tests, compiling,
MFU, packing runs on a GPU)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu_check  # noqa: E402


def test_the_gpu_check_runs_every_part_on_the_cpu(tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "benchmarks/gpu_check.py", "--smoke", "--out", str(out), "--work", str(tmp_path / "work")]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads((out / "gpu_check.json").read_text())
    parts = doc["parts"]
    assert {name: p["status"] for name, p in parts.items()} == {
        "data": "ok", "tests": "skipped", "speed": "ok", "sweep": "ok"
    }  # fmt: skip

    tests = parts["tests"]["tests"]  # every GPU test was collected, and skipped for want of CUDA
    assert len(tests) >= 13 and all(t["outcome"] == "skipped" and "needs CUDA" in t["message"] for t in tests)

    speed = {c["name"]: c for c in parts["speed"]["configs"]}
    assert set(speed) == {"small eager adamw", "small eager muon"}
    for c in speed.values():
        rounds = {k: len(v) for k, v in c["seconds"].items()}
        assert rounds == {"per_step": 2, "batched": 2, "bare": 2}
        assert c["median"]["bare_over_batched"] > 0 and c["median"]["per_step_over_batched"] > 0
        assert c["mfu"] == {"per_step": None, "batched": None, "bare": None}  # no peak on a CPU

    sweep = parts["sweep"]
    fit = sweep["sweep"]["fit"]
    # one lr: width 32, shared by μP and SP, and width 64 for each
    assert len({r["run_id"] for r in sweep["sweep"]["runs"]}) == 3
    assert fit["mup"]["verdict"] and fit["sp"]["verdict"]
    assert all(r["wall_time_s"] > 0 for r in sweep["sweep"]["runs"] if r["status"] == "completed")
    transfer = sweep["transfer"]
    assert [r["role"] for r in transfer["runs"]] == ["transfer", "baseline", "verify-0.5"]
    assert transfer["status"] == "completed" and transfer["regret"]["value"] >= 0
    assert sweep["pack"]["status"] == "skipped"

    assert proc.stdout.rstrip().endswith(doc["table"])  # the table ends the output
    assert doc["table"] in gpu_check.section(doc)  # what --render writes into RESULTS.md
    assert {p.name for p in out.iterdir()} == {
        "gpu_check.json", "speed.json", "tests.xml", "data.log", "tests.log", "speed.log", "sweep.log"
    }  # fmt: skip
