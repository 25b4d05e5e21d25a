"""encoders.heap: glibc accepts the settings (they are real mallopt calls) and a process keeps working under them."""
import subprocess
import sys


def test_glibc_takes_the_settings_and_forwards_still_match():
    code = ("import torch; from encoders.heap import retain_freed_memory; from encoders import create_model; "
            "ok = retain_freed_memory(); torch.manual_seed(0); m = create_model('videomamba_tiny', num_frames=2, "
            "img_size=64, depth=2).eval(); x = torch.randn(1, 3, 2, 64, 64)\n"
            "with torch.no_grad(): a = m(x)[1]; b = m(x)[1]\n"
            "print(ok, bool(torch.equal(a, b)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["True", "True"]

